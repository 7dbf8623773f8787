#include "devices/nn/model.hpp"

#include "devices/check.hpp"

#include <algorithm>

namespace troupe::devices::nn {

model::model(device& dev, std::int64_t inputs, std::vector<layer_spec> layers,
             loss_spec loss)
  : dev_(dev)
  , inputs_(inputs)
  , loss_(loss) {
  TROUPE_CHECK(inputs > 0, "model needs at least one input");
  layout_ = param_layout(inputs, layers);
  param_count_ = nn::param_count(layout_);
  std::int64_t width = inputs;
  int block_index = 0;
  for (const auto& spec : layers) {
    layer_state st;
    st.spec = spec;
    st.in = width;
    if (spec.kind == layer_kind::dense) {
      TROUPE_CHECK(spec.units > 0, "dense layer needs units > 0");
      st.out = spec.units;
      st.weight_block = block_index;
      block_index += 2;
      st.row_start = row_blocks(st.in, st.out);
      st.done.assign(st.row_start.size() - 1, 0);
    } else {
      st.out = width;
    }
    width = st.out;
    layers_.push_back(std::move(st));
  }
  outputs_ = width;
  all_.add(0, param_count_);
}

tensor model::block(const tensor& flat, int index) const {
  const auto& b = layout_[static_cast<std::size_t>(index)];
  return flat.slice(b.offset, b.size()).reshaped({b.rows, b.cols});
}

void model::ensure_batch(std::int64_t batch) {
  if (batch == batch_)
    return;
  for (auto& l : layers_) {
    l.y = dev_.alloc({batch, l.out});
    l.dy = dev_.alloc({batch, l.out});
    l.partial.clear();
    if (l.row_start.size() > 2)
      for (std::size_t b = 0; b + 1 < l.row_start.size(); ++b)
        l.partial.push_back(dev_.alloc({batch, l.out}));
  }
  batch_ = batch;
}

void model::begin_forward(const tensor& x) {
  TROUPE_CHECK(x.rank() == 2 && x.dim(1) == inputs_, "input shape differs");
  TROUPE_CHECK(!layers_.empty(), "model without layers");
  ensure_batch(x.dim(0));
  x_ = x;
  next_layer_ = 0;
  for (auto& l : layers_)
    std::fill(l.done.begin(), l.done.end(), 0);
}

bool model::forward_dense(layer_state& l, const tensor& in,
                          const tensor& params, const range_set& have) {
  const auto& w = layout_[static_cast<std::size_t>(l.weight_block)];
  const auto& b = layout_[static_cast<std::size_t>(l.weight_block + 1)];
  const auto blocks = l.row_start.size() - 1;
  bool complete = true;
  for (std::size_t k = 0; k < blocks; ++k) {
    if (l.done[k])
      continue;
    const auto r0 = l.row_start[k], r1 = l.row_start[k + 1];
    const auto first = w.offset + r0 * w.cols, n = (r1 - r0) * w.cols;
    if (!have.covers(first, first + n)) {
      complete = false;
      continue;
    }
    const auto rows = params.slice(first, n).reshaped({r1 - r0, w.cols});
    if (blocks == 1)
      dev_.gemm(false, false, 1.0f, in, rows, 0.0f, l.y);
    else
      dev_.gemm_columns(false, 1.0f, in, r0, r1 - r0, rows, 0.0f, l.partial[k]);
    l.done[k] = 1;
  }
  if (!complete || !have.covers(b.offset, b.offset + b.size()))
    return false;
  if (blocks > 1) {
    dev_.copy(l.partial[0], l.y);
    for (std::size_t k = 1; k < blocks; ++k)
      dev_.add(l.y, l.partial[k], l.y);
  }
  dev_.add_row_vector(l.y, block(params, l.weight_block + 1));
  return true;
}

bool model::forward_ready(const tensor& params, const range_set& have) {
  TROUPE_CHECK(params.numel() == param_count_, "parameter count differs");
  TROUPE_CHECK(x_.defined(), "forward_ready before begin_forward");
  for (; next_layer_ < layers_.size(); ++next_layer_) {
    auto& l = layers_[next_layer_];
    const tensor& in = next_layer_ == 0 ? x_ : layers_[next_layer_ - 1].y;
    switch (l.spec.kind) {
      case layer_kind::dense:
        if (!forward_dense(l, in, params, have))
          return false;
        break;
      case layer_kind::relu:
        dev_.activation_forward(activation::relu, in, l.y);
        break;
      case layer_kind::sigmoid:
        dev_.activation_forward(activation::sigmoid, in, l.y);
        break;
      case layer_kind::tanh:
        dev_.activation_forward(activation::tanh, in, l.y);
        break;
      case layer_kind::softmax:
        dev_.softmax(in, l.y);
        break;
    }
  }
  return true;
}

const tensor& model::forward(const tensor& params, const tensor& x) {
  begin_forward(x);
  const bool complete = forward_ready(params, all_);
  TROUPE_CHECK(complete, "forward pass incomplete with every parameter");
  return layers_.back().y;
}

loss_sums model::evaluate(const tensor& params, const tensor& x,
                          const tensor& target) {
  const auto& out = forward(params, x);
  return dev_.loss(loss_.kind, loss_.huber_delta, out, target, 0.0f, nullptr);
}

loss_sums model::train_step(const tensor& params, const tensor& x,
                            const tensor& target, float grad_scale,
                            tensor& grad) {
  forward(params, x);
  return backward(params, target, grad_scale, grad);
}

loss_sums model::backward(const tensor& params, const tensor& target,
                          float grad_scale, tensor& grad,
                          const grad_hooks& hooks) {
  TROUPE_CHECK(grad.numel() == param_count_, "gradient size differs");
  TROUPE_CHECK(x_.defined() && next_layer_ == layers_.size(),
               "backward before a complete forward pass");
  auto sums = dev_.loss(loss_.kind, loss_.huber_delta, layers_.back().y, target,
                        grad_scale, &layers_.back().dy);
  auto ready = [&](std::int64_t begin, std::int64_t end) {
    if (hooks.ready)
      hooks.ready(begin, end);
  };
  for (auto i = layers_.size(); i-- > 0;) {
    auto& l = layers_[i];
    const tensor& in = i == 0 ? x_ : layers_[i - 1].y;
    tensor* din = i == 0 ? nullptr : &layers_[i - 1].dy;
    switch (l.spec.kind) {
      case layer_kind::dense: {
        const auto& w = layout_[static_cast<std::size_t>(l.weight_block)];
        const auto& b = layout_[static_cast<std::size_t>(l.weight_block + 1)];
        auto db = block(grad, l.weight_block + 1);
        dev_.sum_rows(l.dy, 0.0f, db);
        ready(b.offset, b.offset + b.size());
        const auto blocks = l.row_start.size() - 1;
        if (blocks == 1) {
          auto dw = block(grad, l.weight_block);
          dev_.gemm(true, false, 1.0f, in, l.dy, 0.0f, dw);
          ready(w.offset, w.offset + w.size());
        } else {
          // Urgent row blocks first, then the rest, each in row order.
          std::vector<std::size_t> order;
          for (int pass = 0; pass < 2; ++pass)
            for (std::size_t k = 0; k < blocks; ++k) {
              const auto first = w.offset + l.row_start[k] * w.cols;
              const auto last = w.offset + l.row_start[k + 1] * w.cols;
              const bool urgent = hooks.urgent && hooks.urgent(first, last);
              if (urgent == (pass == 0))
                order.push_back(k);
            }
          for (auto k : order) {
            const auto r0 = l.row_start[k], r1 = l.row_start[k + 1];
            const auto first = w.offset + r0 * w.cols;
            auto rows = grad.slice(first, (r1 - r0) * w.cols)
                            .reshaped({r1 - r0, w.cols});
            dev_.gemm_columns(true, 1.0f, in, r0, r1 - r0, l.dy, 0.0f, rows);
            ready(first, first + (r1 - r0) * w.cols);
          }
        }
        if (din != nullptr)
          dev_.gemm(false, true, 1.0f, l.dy, block(params, l.weight_block),
                    0.0f, *din);
        break;
      }
      case layer_kind::relu:
        if (din != nullptr)
          dev_.activation_backward(activation::relu, in, l.y, l.dy, *din);
        break;
      case layer_kind::sigmoid:
        if (din != nullptr)
          dev_.activation_backward(activation::sigmoid, in, l.y, l.dy, *din);
        break;
      case layer_kind::tanh:
        if (din != nullptr)
          dev_.activation_backward(activation::tanh, in, l.y, l.dy, *din);
        break;
      case layer_kind::softmax:
        if (din != nullptr)
          dev_.softmax_backward(l.y, l.dy, *din);
        break;
    }
  }
  return sums;
}

} // namespace troupe::devices::nn

#include "devices/nn/model.hpp"

#include "devices/check.hpp"
#include "devices/random.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace troupe::devices::nn {

std::uint64_t noise_key(std::uint64_t seed, std::int64_t epoch,
                        std::int64_t step, std::int64_t rank) {
  return random_bits(random_bits(seed, static_cast<std::uint64_t>(epoch), 1),
                     static_cast<std::uint64_t>(step),
                     static_cast<std::uint64_t>(rank) + 2);
}

namespace {

int blocks_of(layer_kind k) {
  switch (k) {
    case layer_kind::dense:
    case layer_kind::conv2d:
    case layer_kind::layer_norm:
      return 2;
    case layer_kind::batch_norm:
      return 3;
    default:
      return 0;
  }
}

} // namespace

model::model(device& dev, shape_t input, std::vector<layer_spec> layers,
             loss_spec loss)
  : dev_(dev)
  , input_(std::move(input))
  , inputs_(numel_of(input_))
  , loss_(loss) {
  TROUPE_CHECK(inputs_ > 0, "model needs at least one input");
  const auto shapes = infer_shapes(input_, layers);
  layout_ = param_layout(input_, layers);
  param_count_ = nn::param_count(layout_);
  int block_index = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    layer_state st;
    st.spec = layers[i];
    st.in_shape = i == 0 ? input_ : shapes[i - 1];
    st.out_shape = shapes[i];
    st.in = numel_of(st.in_shape);
    st.out = numel_of(st.out_shape);
    st.blocks = blocks_of(st.spec.kind);
    if (st.spec.kind == layer_kind::custom) {
      st.custom = make_layer(st.spec, fmt::format("layers[{}]", i));
      st.blocks = static_cast<int>(st.custom->params(st.in_shape).size());
      if (dev_.kind() != device_kind::cpu)
        throw shape_error(fmt::format(
            "layers[{}] ({}): custom layers compute on the CPU; this worker "
            "is on {} (use cluster.device = \"cpu\")",
            i, st.spec.custom, dev_.name()));
    }
    if (st.blocks > 0)
      st.first_block = block_index;
    block_index += st.blocks;
    if (st.spec.kind == layer_kind::dense) {
      st.row_start = row_blocks(st.in, st.out);
      st.done.assign(st.row_start.size() - 1, 0);
    }
    if (st.spec.kind == layer_kind::conv2d ||
        st.spec.kind == layer_kind::max_pool2d ||
        st.spec.kind == layer_kind::avg_pool2d) {
      auto& g = st.window;
      g.channels = st.in_shape[0];
      g.in_h = st.in_shape[1];
      g.in_w = st.in_shape[2];
      g.out_channels = st.out_shape[0];
      g.out_h = st.out_shape[1];
      g.out_w = st.out_shape[2];
      g.kernel = st.spec.kernel;
      g.stride = st.spec.stride;
      g.padding = st.spec.padding;
    }
    layers_.push_back(std::move(st));
  }
  outputs_ = layers_.empty() ? inputs_ : layers_.back().out;
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
    l.window.batch = batch;
    l.workspace = tensor{};
    switch (l.spec.kind) {
      case layer_kind::batch_norm:
        l.mean = dev_.alloc({l.in_shape[0]});
        l.var = dev_.alloc({l.in_shape[0]});
        break;
      case layer_kind::layer_norm:
        l.mean = dev_.alloc({batch});
        l.var = dev_.alloc({batch});
        break;
      case layer_kind::dropout:
        l.mask = dev_.alloc({batch, l.out});
        break;
      default:
        break;
    }
  }
  batch_ = batch;
}

void model::begin_forward(const tensor& x, bool training) {
  TROUPE_CHECK(x.rank() == 2 && x.dim(1) == inputs_, "input shape differs");
  TROUPE_CHECK(!layers_.empty(), "model without layers");
  ensure_batch(x.dim(0));
  x_ = x;
  training_ = training;
  next_layer_ = 0;
  for (auto& l : layers_)
    std::fill(l.done.begin(), l.done.end(), 0);
}

bool model::forward_dense(layer_state& l, const tensor& in,
                          const tensor& params, const range_set& have) {
  const auto& w = layout_[static_cast<std::size_t>(l.first_block)];
  const auto& b = layout_[static_cast<std::size_t>(l.first_block + 1)];
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
    // Summed in block order: (p0 + p1) + p2 + ...
    dev_.add(l.partial[0], l.partial[1], l.y);
    for (std::size_t k = 2; k < blocks; ++k)
      dev_.add(l.y, l.partial[k], l.y);
  }
  dev_.add_row_vector(l.y, block(params, l.first_block + 1));
  return true;
}

bool model::has_layer_params(const layer_state& l,
                             const range_set& have) const {
  if (l.blocks == 0)
    return true;
  const auto& first = layout_[static_cast<std::size_t>(l.first_block)];
  const auto& last =
      layout_[static_cast<std::size_t>(l.first_block + l.blocks - 1)];
  return have.covers(first.offset, last.offset + last.size());
}

void model::forward_layer(std::size_t i, const tensor& in,
                          const tensor& params) {
  auto& l = layers_[i];
  const auto batch = in.dim(0);
  switch (l.spec.kind) {
    case layer_kind::dense:
      break; // forward_dense
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
    case layer_kind::conv2d:
      dev_.conv2d_forward(l.window, in, block(params, l.first_block),
                          block(params, l.first_block + 1), l.y);
      break;
    case layer_kind::max_pool2d:
      dev_.pool_forward(pool_kind::max, l.window, in, l.y, l.workspace);
      break;
    case layer_kind::avg_pool2d:
      dev_.pool_forward(pool_kind::avg, l.window, in, l.y, l.workspace);
      break;
    case layer_kind::flatten:
      dev_.copy(in, l.y);
      break;
    case layer_kind::dropout:
      if (training_ && l.spec.rate > 0.0f)
        dev_.dropout_forward(l.spec.rate, random_bits(context_.noise_key, i, 3),
                             in, l.mask, l.y);
      else
        dev_.copy(in, l.y);
      break;
    case layer_kind::batch_norm: {
      const auto c = l.in_shape[0];
      const auto spatial = l.in / c;
      auto scale = block(params, l.first_block);
      auto shift = block(params, l.first_block + 1);
      if (training_) {
        dev_.batch_norm_forward(true, batch, c, spatial, l.spec.eps, in, scale,
                                shift, l.mean, l.var, l.y);
      } else {
        auto running = block(params, l.first_block + 2);
        auto mean = running.slice(0, c);
        auto var = running.slice(c, c);
        dev_.batch_norm_forward(false, batch, c, spatial, l.spec.eps, in, scale,
                                shift, mean, var, l.y);
      }
      break;
    }
    case layer_kind::layer_norm:
      dev_.layer_norm_forward(l.spec.eps, in, block(params, l.first_block),
                              block(params, l.first_block + 1), l.mean, l.var,
                              l.y);
      break;
    case layer_kind::custom: {
      std::vector<const float*> p;
      for (int k = 0; k < l.blocks; ++k)
        p.push_back(block(params, l.first_block + k).data());
      l.custom->forward(in.data(), l.y.data(), batch, l.in_shape, p, training_);
      break;
    }
  }
}

bool model::forward_ready(const tensor& params, const range_set& have) {
  TROUPE_CHECK(params.numel() == param_count_, "parameter count differs");
  TROUPE_CHECK(x_.defined(), "forward_ready before begin_forward");
  for (; next_layer_ < layers_.size(); ++next_layer_) {
    auto& l = layers_[next_layer_];
    const tensor& in = next_layer_ == 0 ? x_ : layers_[next_layer_ - 1].y;
    if (l.spec.kind == layer_kind::dense) {
      if (!forward_dense(l, in, params, have))
        return false;
      continue;
    }
    if (!has_layer_params(l, have))
      return false;
    forward_layer(next_layer_, in, params);
  }
  return true;
}

const tensor& model::forward(const tensor& params, const tensor& x) {
  begin_forward(x, false);
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
  begin_forward(x, true);
  const bool complete = forward_ready(params, all_);
  TROUPE_CHECK(complete, "forward pass incomplete with every parameter");
  return backward(params, target, grad_scale, grad);
}

void model::backward_layer(std::size_t i, const tensor& in, tensor* din,
                           const tensor& params, tensor& grad,
                           const grad_hooks& hooks) {
  auto& l = layers_[i];
  auto ready = [&](std::int64_t begin, std::int64_t end) {
    if (hooks.ready)
      hooks.ready(begin, end);
  };
  auto ready_blocks = [&](int first_block, int blocks) {
    const auto& a = layout_[static_cast<std::size_t>(first_block)];
    const auto& b = layout_[static_cast<std::size_t>(first_block + blocks - 1)];
    ready(a.offset, b.offset + b.size());
  };
  const auto batch = in.dim(0);
  switch (l.spec.kind) {
    case layer_kind::dense: {
      const auto& w = layout_[static_cast<std::size_t>(l.first_block)];
      const auto& b = layout_[static_cast<std::size_t>(l.first_block + 1)];
      auto db = block(grad, l.first_block + 1);
      dev_.sum_rows(l.dy, 0.0f, db);
      ready(b.offset, b.offset + b.size());
      const auto blocks = l.row_start.size() - 1;
      if (blocks == 1) {
        auto dw = block(grad, l.first_block);
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
          auto rows =
              grad.slice(first, (r1 - r0) * w.cols).reshaped({r1 - r0, w.cols});
          dev_.gemm_columns(true, 1.0f, in, r0, r1 - r0, l.dy, 0.0f, rows);
          ready(first, first + (r1 - r0) * w.cols);
        }
      }
      if (din != nullptr)
        dev_.gemm(false, true, 1.0f, l.dy, block(params, l.first_block), 0.0f,
                  *din);
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
    case layer_kind::conv2d: {
      auto dw = block(grad, l.first_block);
      auto db = block(grad, l.first_block + 1);
      dev_.conv2d_backward(l.window, in, block(params, l.first_block), l.dy,
                           din, dw, db);
      ready_blocks(l.first_block, 2);
      break;
    }
    case layer_kind::max_pool2d:
    case layer_kind::avg_pool2d:
      if (din != nullptr)
        dev_.pool_backward(l.spec.kind == layer_kind::max_pool2d
                               ? pool_kind::max
                               : pool_kind::avg,
                           l.window, in, l.y, l.workspace, l.dy, *din);
      break;
    case layer_kind::flatten:
      if (din != nullptr)
        dev_.copy(l.dy, *din);
      break;
    case layer_kind::dropout:
      if (din == nullptr)
        break;
      if (l.spec.rate > 0.0f)
        dev_.dropout_backward(l.mask, l.dy, *din);
      else
        dev_.copy(l.dy, *din);
      break;
    case layer_kind::batch_norm: {
      const auto c = l.in_shape[0];
      const auto spatial = l.in / c;
      auto dscale = block(grad, l.first_block);
      auto dshift = block(grad, l.first_block + 1);
      dev_.batch_norm_backward(batch, c, spatial, l.spec.eps, in,
                               block(params, l.first_block), l.mean, l.var,
                               l.dy, din, dscale, dshift);
      // The running-statistics block receives this batch's statistics,
      // which the param shard folds in with the momentum: the mean and the
      // unbiased variance (PyTorch's), each weighted by this worker's
      // share.
      auto stats = block(grad, l.first_block + 2);
      auto mean = stats.slice(0, c);
      auto var = stats.slice(c, c);
      const auto count = batch * spatial;
      dev_.copy(l.mean, mean);
      dev_.scale(mean, context_.stat_share);
      dev_.copy(l.var, var);
      dev_.scale(var, context_.stat_share *
                          (count > 1 ? static_cast<float>(count) /
                                           static_cast<float>(count - 1)
                                     : 1.0f));
      ready_blocks(l.first_block, 3);
      break;
    }
    case layer_kind::layer_norm: {
      auto dscale = block(grad, l.first_block);
      auto dshift = block(grad, l.first_block + 1);
      dev_.layer_norm_backward(l.spec.eps, in, block(params, l.first_block),
                               l.mean, l.var, l.dy, din, dscale, dshift);
      ready_blocks(l.first_block, 2);
      break;
    }
    case layer_kind::custom: {
      std::vector<const float*> p;
      std::vector<float*> dp;
      for (int k = 0; k < l.blocks; ++k) {
        p.push_back(block(params, l.first_block + k).data());
        dp.push_back(block(grad, l.first_block + k).data());
      }
      l.custom->backward(in.data(), l.y.data(), l.dy.data(),
                         din != nullptr ? din->data() : nullptr, batch,
                         l.in_shape, p, dp);
      if (l.blocks > 0)
        ready_blocks(l.first_block, l.blocks);
      break;
    }
  }
}

loss_sums model::backward(const tensor& params, const tensor& target,
                          float grad_scale, tensor& grad,
                          const grad_hooks& hooks) {
  TROUPE_CHECK(grad.numel() == param_count_, "gradient size differs");
  TROUPE_CHECK(x_.defined() && next_layer_ == layers_.size(),
               "backward before a complete forward pass");
  TROUPE_CHECK(training_, "backward after an inference-mode forward pass");
  auto sums = dev_.loss(loss_.kind, loss_.huber_delta, layers_.back().y, target,
                        grad_scale, &layers_.back().dy);
  for (auto i = layers_.size(); i-- > 0;) {
    const tensor& in = i == 0 ? x_ : layers_[i - 1].y;
    tensor* din = i == 0 ? nullptr : &layers_[i - 1].dy;
    backward_layer(i, in, din, params, grad, hooks);
  }
  return sums;
}

} // namespace troupe::devices::nn

#include "devices/nn/model.hpp"

#include "devices/check.hpp"

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
    } else {
      st.out = width;
    }
    width = st.out;
    layers_.push_back(std::move(st));
  }
  outputs_ = width;
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
  }
  batch_ = batch;
}

const tensor& model::forward(const tensor& params, const tensor& x) {
  TROUPE_CHECK(params.numel() == param_count_, "parameter count differs");
  TROUPE_CHECK(x.rank() == 2 && x.dim(1) == inputs_, "input shape differs");
  TROUPE_CHECK(!layers_.empty(), "model without layers");
  ensure_batch(x.dim(0));
  const tensor* in = &x;
  for (auto& l : layers_) {
    switch (l.spec.kind) {
      case layer_kind::dense: {
        dev_.gemm(false, false, 1.0f, *in, block(params, l.weight_block), 0.0f,
                  l.y);
        dev_.add_row_vector(l.y, block(params, l.weight_block + 1));
        break;
      }
      case layer_kind::relu:
        dev_.activation_forward(activation::relu, *in, l.y);
        break;
      case layer_kind::sigmoid:
        dev_.activation_forward(activation::sigmoid, *in, l.y);
        break;
      case layer_kind::tanh:
        dev_.activation_forward(activation::tanh, *in, l.y);
        break;
      case layer_kind::softmax:
        dev_.softmax(*in, l.y);
        break;
    }
    in = &l.y;
  }
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
  TROUPE_CHECK(grad.numel() == param_count_, "gradient size differs");
  const auto& out = forward(params, x);
  auto sums = dev_.loss(loss_.kind, loss_.huber_delta, out, target, grad_scale,
                        &layers_.back().dy);
  for (auto i = layers_.size(); i-- > 0;) {
    auto& l = layers_[i];
    const tensor& in = i == 0 ? x : layers_[i - 1].y;
    tensor* din = i == 0 ? nullptr : &layers_[i - 1].dy;
    switch (l.spec.kind) {
      case layer_kind::dense: {
        auto dw = block(grad, l.weight_block);
        auto db = block(grad, l.weight_block + 1);
        dev_.gemm(true, false, 1.0f, in, l.dy, 0.0f, dw);
        dev_.sum_rows(l.dy, 0.0f, db);
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

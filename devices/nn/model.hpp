#pragma once
/// \file A sequential model written once against the device interface.
#include "devices/device.hpp"
#include "devices/nn/layers.hpp"

#include <cstdint>
#include <vector>

namespace troupe::devices::nn {

/// A sequential model whose parameters live outside it, in one flattened
/// vector (see param_layout): workers hold parameter versions, the model
/// holds only activations. Not thread-safe; one per worker actor.
class model {
public:
  model(device& dev, std::int64_t inputs, std::vector<layer_spec> layers,
        loss_spec loss);

  std::int64_t inputs() const { return inputs_; }
  std::int64_t outputs() const { return outputs_; }
  std::int64_t param_count() const { return param_count_; }
  const std::vector<param_block>& layout() const { return layout_; }
  const loss_spec& loss() const { return loss_; }

  /// Runs the layers on x [B, inputs]; returns the output [B, outputs]
  /// (logits for cross_entropy), valid until the next call.
  const tensor& forward(const tensor& params, const tensor& x);

  /// Forward, loss and backward on one batch. Writes grad_scale times the
  /// gradient of the summed per-sample loss into grad (param_count
  /// elements; every element is written).
  loss_sums train_step(const tensor& params, const tensor& x,
                       const tensor& target, float grad_scale, tensor& grad);

  /// Forward and loss without gradients.
  loss_sums evaluate(const tensor& params, const tensor& x,
                     const tensor& target);

private:
  struct layer_state {
    layer_spec spec;
    std::int64_t in = 0;
    std::int64_t out = 0;
    int weight_block = -1; // index into layout_ for dense layers
    tensor y;              // output activations [B, out]
    tensor dy;             // gradient w.r.t. the output
  };

  void ensure_batch(std::int64_t batch);
  tensor block(const tensor& flat, int index) const;

  device& dev_;
  std::int64_t inputs_;
  std::int64_t outputs_ = 0;
  loss_spec loss_;
  std::vector<param_block> layout_;
  std::int64_t param_count_ = 0;
  std::vector<layer_state> layers_;
  std::int64_t batch_ = -1;
};

} // namespace troupe::devices::nn

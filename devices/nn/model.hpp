#pragma once
/// \file A sequential model written once against the device interface.
#include "devices/device.hpp"
#include "devices/nn/custom.hpp"
#include "devices/nn/layers.hpp"
#include "devices/nn/ranges.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace troupe::devices::nn {

/// What a backward pass tells its caller while it runs, so that the gradient
/// can leave in pieces while the rest is computed.
struct grad_hooks {
  /// Called as each range [begin, end) of the gradient becomes final.
  std::function<void(std::int64_t, std::int64_t)> ready;
  /// Weight row blocks that overlap a range for which this returns true are
  /// computed before the others (e.g. ranges that travel furthest).
  std::function<bool(std::int64_t, std::int64_t)> urgent;
};

/// What a training step's layers need beyond the batch: dropout masks are
/// drawn from noise_key (and the layer's index); batch_norm sends its batch
/// statistics to the running-statistics block weighted by stat_share (1 /
/// workers in sync mode, where the workers' shares are summed; 1 when each
/// gradient is applied alone).
struct step_context {
  std::uint64_t noise_key = 0;
  float stat_share = 1.0f;
};

/// The noise key of a training step: a pure function of (seed, epoch,
/// step, worker rank), so a restarted worker draws the same masks.
std::uint64_t noise_key(std::uint64_t seed, std::int64_t epoch,
                        std::int64_t step, std::int64_t rank);

/// A sequential model whose parameters live outside it, in one flattened
/// vector (see param_layout): workers hold parameter versions, the model
/// holds only activations. Not thread-safe; one per worker actor.
class model {
public:
  /// `input` is the per-sample shape ([features] or [channels, height,
  /// width]); batches arrive flat, [B, numel(input)]. Throws shape_error
  /// when the layers do not fit it.
  model(device& dev, shape_t input, std::vector<layer_spec> layers,
        loss_spec loss);
  model(device& dev, std::int64_t inputs, std::vector<layer_spec> layers,
        loss_spec loss)
    : model(dev, shape_t{inputs}, std::move(layers), loss) {}

  std::int64_t inputs() const { return inputs_; }
  std::int64_t outputs() const { return outputs_; }
  std::int64_t param_count() const { return param_count_; }
  const std::vector<param_block>& layout() const { return layout_; }
  const loss_spec& loss() const { return loss_; }

  /// Sets the context of the training steps that follow.
  void set_context(const step_context& c) { context_ = c; }

  /// Runs the layers on x [B, inputs] in inference mode (no dropout,
  /// batch_norm on its running statistics); returns the output [B, outputs]
  /// (logits for cross_entropy), valid until the next call.
  const tensor& forward(const tensor& params, const tensor& x);

  /// Forward, loss and backward on one batch. Writes grad_scale times the
  /// gradient of the summed per-sample loss into grad (param_count
  /// elements; every element is written).
  loss_sums train_step(const tensor& params, const tensor& x,
                       const tensor& target, float grad_scale, tensor& grad);

  /// Incremental forward, to overlap it with the arrival of parameters:
  /// begin_forward(x) starts a pass on x [B, inputs]; forward_ready(params,
  /// have) runs every piece whose parameters `have` covers and returns true
  /// once the pass is complete. A dense layer's weights are used in fixed
  /// row blocks, each multiplied into a buffer of its own as soon as it is
  /// present, and the products are summed in block order: the result does
  /// not depend on the order in which parameters arrive.
  /// Training mode unless `training` is false.
  void begin_forward(const tensor& x, bool training = true);
  bool forward_ready(const tensor& params, const range_set& have);
  /// The output [B, outputs] of the last complete forward pass, valid
  /// until the next pass begins.
  const tensor& output() const { return layers_.back().y; }

  /// Loss and backward after a complete forward pass on (x, target); writes
  /// grad as train_step does, telling `hooks` as ranges become final.
  loss_sums backward(const tensor& params, const tensor& target,
                     float grad_scale, tensor& grad,
                     const grad_hooks& hooks = {});

  /// Forward (inference mode) and loss without gradients.
  loss_sums evaluate(const tensor& params, const tensor& x,
                     const tensor& target);

private:
  struct layer_state {
    layer_spec spec;
    shape_t in_shape;                    // per sample
    shape_t out_shape;                   // per sample
    std::int64_t in = 0;                 // numel(in_shape)
    std::int64_t out = 0;                // numel(out_shape)
    int first_block = -1;                // index into layout_ of its params
    int blocks = 0;                      // how many blocks it has
    std::vector<std::int64_t> row_start; // dense: weight row blocks
    std::vector<tensor> partial;         // dense, > 1 block: their products
    std::vector<char> done;              // this pass: block multiplied
    window_geometry window;              // conv2d, pooling (batch set later)
    tensor workspace;                    // pooling: kept for backward
    tensor mean, var;                    // normalization statistics
    tensor mask;                         // dropout
    tensor y;                            // output activations [B, out]
    tensor dy;                           // gradient w.r.t. the output
    std::shared_ptr<const custom_layer> custom; // custom: the user's layer
  };

  void ensure_batch(std::int64_t batch);
  bool forward_dense(layer_state& l, const tensor& in, const tensor& params,
                     const range_set& have);
  void forward_layer(std::size_t i, const tensor& in, const tensor& params);
  void backward_layer(std::size_t i, const tensor& in, tensor* din,
                      const tensor& params, tensor& grad,
                      const grad_hooks& hooks);
  bool has_layer_params(const layer_state& l, const range_set& have) const;
  tensor block(const tensor& flat, int index) const;

  device& dev_;
  shape_t input_;
  std::int64_t inputs_;
  std::int64_t outputs_ = 0;
  loss_spec loss_;
  std::vector<param_block> layout_;
  std::int64_t param_count_ = 0;
  std::vector<layer_state> layers_;
  std::int64_t batch_ = -1;
  range_set all_;              // every parameter
  tensor x_;                   // input of the pass in progress
  std::size_t next_layer_ = 0; // first layer of the pass not yet done
  bool training_ = true;       // mode of the pass in progress
  step_context context_;
};

} // namespace troupe::devices::nn

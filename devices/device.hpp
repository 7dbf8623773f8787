#pragma once
/// \file The device interface: everything above devices/ sees only this.
#include "devices/tensor.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace troupe::devices {

/// Elementwise activation functions.
enum class activation : std::uint8_t { relu, sigmoid, tanh };

/// Loss functions. cross_entropy is fused with softmax over logits.
enum class loss_kind : std::uint8_t { cross_entropy, mse, huber };

/// Optimizers; their hyper-parameters follow PyTorch's definitions.
enum class optimizer_kind : std::uint8_t {
  sgd,
  momentum,
  nesterov,
  adam,
  adamw, ///< adam with decoupled weight decay (torch.optim.AdamW)
};

/// Hyper-parameters of one optimizer.
struct optimizer_config {
  optimizer_kind kind = optimizer_kind::adam;
  float lr = 0.001f;
  float momentum = 0.9f; ///< momentum and nesterov
  float beta1 = 0.9f;    ///< adam
  float beta2 = 0.999f;  ///< adam
  float eps = 1e-8f;     ///< adam
  /// sgd, momentum, nesterov, adam: L2 term added to the gradient; adamw:
  /// decoupled, p *= 1 - lr * weight_decay before the step.
  float weight_decay = 0;
};

/// Number of state tensors (each as large as the parameters) an optimizer
/// keeps.
int optimizer_state_count(optimizer_kind k);

/// A 2-D convolution or pooling window over NCHW images: x [batch,
/// channels, in_h, in_w] -> y [batch, out_channels, out_h, out_w], square
/// kernel, the same stride and zero padding on both axes.
struct window_geometry {
  std::int64_t batch = 0;
  std::int64_t channels = 0;
  std::int64_t in_h = 0, in_w = 0;
  std::int64_t out_channels = 0; ///< conv: filters; pooling: channels
  std::int64_t out_h = 0, out_w = 0;
  std::int64_t kernel = 1, stride = 1, padding = 0;
};

/// Pooling kinds. avg divides by the whole window, padding included
/// (PyTorch's count_include_pad = true).
enum class pool_kind : std::uint8_t { max, avg };

/// Sum of per-sample losses and how many predictions were right.
struct loss_sums {
  double loss = 0;          ///< sum over samples of the per-sample loss
  std::int64_t correct = 0; ///< classification only: argmax == label
};

/// A compute device. Tensors passed in must live on this device. All
/// matrices are row-major; shapes are checked.
class device {
public:
  virtual ~device() = default;

  virtual device_kind kind() const = 0;
  /// e.g. "cpu (OpenBLAS, 1 thread)".
  virtual std::string name() const = 0;

  /// Uninitialized tensor on this device.
  virtual tensor alloc(const shape_t& shape) = 0;
  /// Uninitialized CPU tensor suited to transfers with this device (pinned
  /// host memory for CUDA). It may be sent between actors as any CPU
  /// tensor.
  virtual tensor host_alloc(const shape_t& shape) = 0;
  /// dst (on this device) = src (a CPU tensor), same element count. May
  /// return before the copy is done: later ops on this device see it, and
  /// the device keeps src alive until then.
  virtual void upload(const tensor& src, tensor& dst) = 0;
  /// dst (a CPU tensor) = src (on this device); done when this returns.
  virtual void download(const tensor& src, tensor& dst) = 0;
  /// Returns once every op queued on this device is done.
  virtual void synchronize() = 0;
  virtual void fill(tensor& x, float value) = 0;
  /// dst = src (same element count).
  virtual void copy(const tensor& src, tensor& dst) = 0;

  /// c = alpha * op(a) * op(b) + beta * c, op = transpose when ta/tb.
  virtual void gemm(bool ta, bool tb, float alpha, const tensor& a,
                    const tensor& b, float beta, tensor& c) = 0;
  /// gemm on the column block [first, first + count) of a, read in place:
  /// c = alpha * op(a[:, first : first + count]) * b + beta * c.
  virtual void gemm_columns(bool ta, float alpha, const tensor& a,
                            std::int64_t first, std::int64_t count,
                            const tensor& b, float beta, tensor& c) = 0;
  /// y[i, :] += bias for every row i.
  virtual void add_row_vector(tensor& y, const tensor& bias) = 0;
  /// out[j] = sum_i x[i, j] (+ beta * out[j]).
  virtual void sum_rows(const tensor& x, float beta, tensor& out) = 0;
  /// out = a + b (same element count; out may alias a or b).
  virtual void add(const tensor& a, const tensor& b, tensor& out) = 0;
  /// y += a * x.
  virtual void axpy(float a, const tensor& x, tensor& y) = 0;
  virtual void scale(tensor& x, float a) = 0;
  /// Sum of all elements, accumulated in double.
  virtual double sum(const tensor& x) = 0;

  virtual void activation_forward(activation f, const tensor& x, tensor& y) = 0;
  /// dx = dy * f'(x), given y = f(x).
  virtual void activation_backward(activation f, const tensor& x,
                                   const tensor& y, const tensor& dy,
                                   tensor& dx) = 0;
  /// Row-wise softmax.
  virtual void softmax(const tensor& x, tensor& y) = 0;
  /// dx = y * (dy - sum(dy * y)) row-wise, given y = softmax(x).
  virtual void softmax_backward(const tensor& y, const tensor& dy,
                                tensor& dx) = 0;

  /// Loss of predictions against targets. For cross_entropy, pred is logits
  /// [B, K] and target holds class indices [B]; for mse/huber target has
  /// pred's shape. Per-sample losses are means over outputs (PyTorch
  /// "mean"). When dpred is defined it receives grad_scale times the
  /// gradient of the summed per-sample loss.
  virtual loss_sums loss(loss_kind k, float huber_delta, const tensor& pred,
                         const tensor& target, float grad_scale,
                         tensor* dpred) = 0;

  /// y = conv(x, w) + b; w [out_channels, channels, kernel, kernel], b
  /// [out_channels]; cross-correlation, as PyTorch's Conv2d.
  virtual void conv2d_forward(const window_geometry& g, const tensor& x,
                              const tensor& w, const tensor& b, tensor& y);
  /// dw and db (overwritten) from x and dy; dx too when it is not null.
  virtual void conv2d_backward(const window_geometry& g, const tensor& x,
                               const tensor& w, const tensor& dy, tensor* dx,
                               tensor& dw, tensor& db);
  /// Pooling forward; `workspace` (may be undefined, then it is allocated)
  /// keeps what the backward pass needs.
  virtual void pool_forward(pool_kind k, const window_geometry& g,
                            const tensor& x, tensor& y, tensor& workspace);
  /// dx (overwritten) from dy, given the forward's x, y and workspace.
  virtual void pool_backward(pool_kind k, const window_geometry& g,
                             const tensor& x, const tensor& y,
                             const tensor& workspace, const tensor& dy,
                             tensor& dx);
  /// Batch normalization of x [batch, channels, spatial] over batch and
  /// spatial per channel: y = (x - mean) / sqrt(var + eps) * scale + shift.
  /// Training: the batch's mean and biased variance, written to `mean` and
  /// `var` [channels]. Inference (training false): mean and var are read.
  virtual void batch_norm_forward(bool training, std::int64_t batch,
                                  std::int64_t channels, std::int64_t spatial,
                                  float eps, const tensor& x,
                                  const tensor& scale, const tensor& shift,
                                  tensor& mean, tensor& var, tensor& y);
  /// dx, dscale and dshift (overwritten) of a training forward.
  virtual void batch_norm_backward(std::int64_t batch, std::int64_t channels,
                                   std::int64_t spatial, float eps,
                                   const tensor& x, const tensor& scale,
                                   const tensor& mean, const tensor& var,
                                   const tensor& dy, tensor* dx, tensor& dscale,
                                   tensor& dshift);
  /// Layer normalization of each row of x [rows, width]; mean and var
  /// [rows] receive the statistics.
  virtual void layer_norm_forward(float eps, const tensor& x,
                                  const tensor& scale, const tensor& shift,
                                  tensor& mean, tensor& var, tensor& y);
  virtual void layer_norm_backward(float eps, const tensor& x,
                                   const tensor& scale, const tensor& mean,
                                   const tensor& var, const tensor& dy,
                                   tensor* dx, tensor& dscale, tensor& dshift);
  /// Inverted dropout: mask[i] = 0 with probability rate, else 1 / (1 -
  /// rate), drawn as unit_float(key, i) (devices/random.hpp), so the mask is
  /// a pure function of the key; y = x * mask.
  virtual void dropout_forward(float rate, std::uint64_t key, const tensor& x,
                               tensor& mask, tensor& y);
  /// dx = dy * mask.
  virtual void dropout_backward(const tensor& mask, const tensor& dy,
                                tensor& dx);

  /// One optimizer step on a parameter slice: reads params_in and grad,
  /// updates state in place, writes params_out (may alias params_in).
  /// step counts from 1.
  virtual void optimizer_step(const optimizer_config& cfg, std::int64_t step,
                              const tensor& params_in, const tensor& grad,
                              tensor* state, tensor& params_out) = 0;
};

/// Throws device_error: `op` has no kernel on device `d`. The default of
/// every op a backend does not implement.
[[noreturn]] void unsupported_op(const device& d, const char* op);

/// The process-wide CPU device (OpenBLAS with one BLAS thread per caller).
device& cpu();

} // namespace troupe::devices

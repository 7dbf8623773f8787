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
enum class optimizer_kind : std::uint8_t { sgd, momentum, nesterov, adam };

/// Hyper-parameters of one optimizer.
struct optimizer_config {
  optimizer_kind kind = optimizer_kind::adam;
  float lr = 0.001f;
  float momentum = 0.9f;  ///< momentum and nesterov
  float beta1 = 0.9f;     ///< adam
  float beta2 = 0.999f;   ///< adam
  float eps = 1e-8f;      ///< adam
  float weight_decay = 0; ///< L2 term added to the gradient
};

/// Number of state tensors (each as large as the parameters) an optimizer
/// keeps.
int optimizer_state_count(optimizer_kind k);

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

  /// One optimizer step on a parameter slice: reads params_in and grad,
  /// updates state in place, writes params_out (may alias params_in).
  /// step counts from 1.
  virtual void optimizer_step(const optimizer_config& cfg, std::int64_t step,
                              const tensor& params_in, const tensor& grad,
                              tensor* state, tensor& params_out) = 0;
};

/// The process-wide CPU device (OpenBLAS with one BLAS thread per caller).
device& cpu();

} // namespace troupe::devices

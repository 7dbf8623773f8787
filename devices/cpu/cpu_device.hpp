#pragma once
/// \file The CPU backend: oneDNN (gemm, convolution, pooling,
/// normalization), OpenBLAS for the smallest gemms, loops written to
/// vectorize.
#include "devices/device.hpp"

namespace troupe::devices::cpu_backend {

/// CPU implementation of the device interface. Stateless: one instance
/// serves every actor; OpenBLAS runs one thread per calling actor.
class cpu_device final : public device {
public:
  cpu_device();
  device_kind kind() const override { return device_kind::cpu; }
  std::string name() const override;
  tensor alloc(const shape_t& shape) override;
  tensor host_alloc(const shape_t& shape) override;
  void upload(const tensor& src, tensor& dst) override;
  void download(const tensor& src, tensor& dst) override;
  void synchronize() override {}
  void fill(tensor& x, float value) override;
  void copy(const tensor& src, tensor& dst) override;
  void gemm(bool ta, bool tb, float alpha, const tensor& a, const tensor& b,
            float beta, tensor& c) override;
  void gemm_columns(bool ta, float alpha, const tensor& a, std::int64_t first,
                    std::int64_t count, const tensor& b, float beta,
                    tensor& c) override;
  void add_row_vector(tensor& y, const tensor& bias) override;
  void sum_rows(const tensor& x, float beta, tensor& out) override;
  void add(const tensor& a, const tensor& b, tensor& out) override;
  void axpy(float a, const tensor& x, tensor& y) override;
  void scale(tensor& x, float a) override;
  double sum(const tensor& x) override;
  void activation_forward(activation f, const tensor& x, tensor& y) override;
  void activation_backward(activation f, const tensor& x, const tensor& y,
                           const tensor& dy, tensor& dx) override;
  void softmax(const tensor& x, tensor& y) override;
  void softmax_backward(const tensor& y, const tensor& dy, tensor& dx) override;
  loss_sums loss(loss_kind k, float huber_delta, const tensor& pred,
                 const tensor& target, float grad_scale,
                 tensor* dpred) override;
  void conv2d_forward(const window_geometry& g, const tensor& x,
                      const tensor& w, const tensor& b, tensor& y) override;
  void conv2d_backward(const window_geometry& g, const tensor& x,
                       const tensor& w, const tensor& dy, tensor* dx,
                       tensor& dw, tensor& db) override;
  void pool_forward(pool_kind k, const window_geometry& g, const tensor& x,
                    tensor& y, tensor& workspace) override;
  void pool_backward(pool_kind k, const window_geometry& g, const tensor& x,
                     const tensor& y, const tensor& workspace, const tensor& dy,
                     tensor& dx) override;
  void batch_norm_forward(bool training, std::int64_t batch,
                          std::int64_t channels, std::int64_t spatial,
                          float eps, const tensor& x, const tensor& scale,
                          const tensor& shift, tensor& mean, tensor& var,
                          tensor& y) override;
  void batch_norm_backward(std::int64_t batch, std::int64_t channels,
                           std::int64_t spatial, float eps, const tensor& x,
                           const tensor& scale, const tensor& mean,
                           const tensor& var, const tensor& dy, tensor* dx,
                           tensor& dscale, tensor& dshift) override;
  void layer_norm_forward(float eps, const tensor& x, const tensor& scale,
                          const tensor& shift, tensor& mean, tensor& var,
                          tensor& y) override;
  void layer_norm_backward(float eps, const tensor& x, const tensor& scale,
                           const tensor& mean, const tensor& var,
                           const tensor& dy, tensor* dx, tensor& dscale,
                           tensor& dshift) override;
  void dropout_forward(float rate, std::uint64_t key, const tensor& x,
                       tensor& mask, tensor& y) override;
  void dropout_backward(const tensor& mask, const tensor& dy,
                        tensor& dx) override;
  void optimizer_step(const optimizer_config& cfg, std::int64_t step,
                      const tensor& params_in, const tensor& grad,
                      tensor* state, tensor& params_out) override;
};

/// c = op(a) op(b), row-major with leading dimensions, on a oneDNN matmul
/// primitive with one thread for the caller (dnnl_ops.cpp).
void dnnl_sgemm_rowmajor(bool ta, bool tb, std::int64_t m, std::int64_t n,
                         std::int64_t k, const float* a, std::int64_t lda,
                         const float* b, std::int64_t ldb, float* c,
                         std::int64_t ldc);

} // namespace troupe::devices::cpu_backend

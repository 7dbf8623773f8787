#pragma once
/// \file The CPU backend: OpenBLAS sgemm plus loops written to vectorize.
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
  void optimizer_step(const optimizer_config& cfg, std::int64_t step,
                      const tensor& params_in, const tensor& grad,
                      tensor* state, tensor& params_out) override;
};

} // namespace troupe::devices::cpu_backend

#include "devices/cpu/cpu_device.hpp"

#include "devices/check.hpp"
#include "devices/shapes.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace troupe::devices {

int optimizer_state_count(optimizer_kind k) {
  switch (k) {
    case optimizer_kind::sgd:
      return 0;
    case optimizer_kind::momentum:
    case optimizer_kind::nesterov:
      return 1;
    case optimizer_kind::adam:
    case optimizer_kind::adamw:
      return 2;
  }
  return 0;
}

device& cpu() {
  static cpu_backend::cpu_device instance;
  return instance;
}

} // namespace troupe::devices

namespace troupe::devices::cpu_backend {

namespace {

void expect_cpu(const tensor& t) {
  TROUPE_CHECK(t.defined() && t.kind() == device_kind::cpu,
               "cpu device given a tensor that is not a defined CPU tensor");
}

void expect_same_size(const tensor& a, const tensor& b) {
  TROUPE_CHECK(a.numel() == b.numel(), "element counts differ");
}

} // namespace

// Hot loops are compiled for several instruction sets and picked at run
// time. The build disables floating-point contraction, so every variant
// computes bit-identical results (elementwise, no reassociation).
#define TROUPE_MULTIVERSION                                                    \
  __attribute__((target_clones("avx512f", "avx2", "default")))

// torch.optim.Adam (1.13) without amsgrad:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
TROUPE_MULTIVERSION
void adam_kernel(std::int64_t n, const float* __restrict p,
                 const float* __restrict g, float* __restrict m,
                 float* __restrict v, float* __restrict out, float b1, float b2,
                 float step_size, float inv_bc2_sqrt, float eps, float wd,
                 float decay) {
  // adam: wd adds to the gradient, decay is 1. adamw: wd is 0, and decay
  // (1 - lr * weight_decay) scales the parameter first, as AdamW does.
  for (std::int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) * inv_bc2_sqrt + eps;
    out[i] = p[i] * decay - step_size * mi / denom;
  }
}

cpu_device::cpu_device() {
  // Parallelism comes from actors; OpenBLAS threads would fight them for the
  // cores (measured: PyTorch on 2 threads ran at 1/5 of its 1-thread speed).
  openblas_set_num_threads(1);
}

std::string cpu_device::name() const {
  return fmt::format("cpu (oneDNN, OpenBLAS {}, 1 thread per actor)",
                     openblas_get_corename());
}

tensor cpu_device::alloc(const shape_t& shape) {
  return tensor::empty(shape);
}

tensor cpu_device::host_alloc(const shape_t& shape) {
  return tensor::empty(shape);
}

void cpu_device::upload(const tensor& src, tensor& dst) {
  copy(src, dst);
}

void cpu_device::download(const tensor& src, tensor& dst) {
  copy(src, dst);
}

void cpu_device::fill(tensor& x, float value) {
  expect_cpu(x);
  std::fill_n(x.data(), x.numel(), value);
}

void cpu_device::copy(const tensor& src, tensor& dst) {
  expect_cpu(src);
  expect_cpu(dst);
  expect_same_size(src, dst);
  if (src.data() != dst.data())
    std::memmove(dst.data(), src.data(), src.bytes());
}

namespace {

// c = alpha * op(a[:, first : first + cols]) * op(b) + beta * c, with a's
// column block read in place (leading dimension a.dim(1)).
void sgemm(bool ta, bool tb, float alpha, const tensor& a, std::int64_t first,
           std::int64_t cols, const tensor& b, float beta, tensor& c) {
  expect_cpu(a);
  expect_cpu(b);
  expect_cpu(c);
  const auto [m, n, k] = check_gemm(ta, tb, a, first, cols, b, c);
  if (m == 0 || n == 0)
    return;
  // oneDNN's matmul (AVX-512 JIT whatever OPENBLAS_CORETYPE says) wins on
  // every shape measured here but the thinnest: with a side of 16 or less
  // (the 10-class output layer) OpenBLAS took 2.5 us where oneDNN took 4
  // (taskset -c 0, 64x10x128 and 128x10x64). The model only multiplies
  // with alpha 1 and beta 0; anything else goes to OpenBLAS too.
  if (std::min({m, n, k}) > 16 && alpha == 1.0f && beta == 0.0f) {
    dnnl_sgemm_rowmajor(ta, tb, m, n, k, a.data() + first, a.dim(1), b.data(),
                        b.dim(1), c.data(), n);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
              tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha,
              a.data() + first, static_cast<blasint>(a.dim(1)), b.data(),
              static_cast<blasint>(b.dim(1)), beta, c.data(),
              static_cast<blasint>(n));
}

} // namespace

void cpu_device::gemm(bool ta, bool tb, float alpha, const tensor& a,
                      const tensor& b, float beta, tensor& c) {
  TROUPE_CHECK(a.rank() == 2, "gemm needs matrices");
  sgemm(ta, tb, alpha, a, 0, a.dim(1), b, beta, c);
}

void cpu_device::gemm_columns(bool ta, float alpha, const tensor& a,
                              std::int64_t first, std::int64_t count,
                              const tensor& b, float beta, tensor& c) {
  TROUPE_CHECK(a.rank() == 2, "gemm needs matrices");
  sgemm(ta, false, alpha, a, first, count, b, beta, c);
}

void cpu_device::add_row_vector(tensor& y, const tensor& bias) {
  expect_cpu(y);
  expect_cpu(bias);
  const auto rows = rows_of(y);
  const auto cols = cols_of(y);
  TROUPE_CHECK(bias.numel() == cols, "bias size differs from columns");
  const float* b = bias.data();
  for (std::int64_t i = 0; i < rows; ++i) {
    float* row = y.data() + i * cols;
    for (std::int64_t j = 0; j < cols; ++j)
      row[j] += b[j];
  }
}

void cpu_device::sum_rows(const tensor& x, float beta, tensor& out) {
  expect_cpu(x);
  expect_cpu(out);
  const auto rows = rows_of(x);
  const auto cols = cols_of(x);
  TROUPE_CHECK(out.numel() == cols, "sum_rows output size differs");
  float* o = out.data();
  if (beta == 0.0f)
    std::fill_n(o, cols, 0.0f);
  else if (beta != 1.0f)
    for (std::int64_t j = 0; j < cols; ++j)
      o[j] *= beta;
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* row = x.data() + i * cols;
    for (std::int64_t j = 0; j < cols; ++j)
      o[j] += row[j];
  }
}

void cpu_device::add(const tensor& a, const tensor& b, tensor& out) {
  expect_cpu(a);
  expect_cpu(b);
  expect_cpu(out);
  expect_same_size(a, b);
  expect_same_size(a, out);
  const float* as = a.data();
  const float* bs = b.data();
  float* o = out.data();
  const auto n = a.numel();
  for (std::int64_t i = 0; i < n; ++i)
    o[i] = as[i] + bs[i];
}

void cpu_device::axpy(float a, const tensor& x, tensor& y) {
  expect_cpu(x);
  expect_cpu(y);
  expect_same_size(x, y);
  const float* xs = x.data();
  float* ys = y.data();
  const auto n = x.numel();
  for (std::int64_t i = 0; i < n; ++i)
    ys[i] += a * xs[i];
}

void cpu_device::scale(tensor& x, float a) {
  expect_cpu(x);
  float* xs = x.data();
  const auto n = x.numel();
  for (std::int64_t i = 0; i < n; ++i)
    xs[i] *= a;
}

double cpu_device::sum(const tensor& x) {
  expect_cpu(x);
  double s = 0;
  const float* xs = x.data();
  for (std::int64_t i = 0; i < x.numel(); ++i)
    s += xs[i];
  return s;
}

void cpu_device::activation_forward(activation f, const tensor& x, tensor& y) {
  expect_cpu(x);
  expect_cpu(y);
  expect_same_size(x, y);
  const float* xs = x.data();
  float* ys = y.data();
  const auto n = x.numel();
  switch (f) {
    case activation::relu:
      for (std::int64_t i = 0; i < n; ++i)
        ys[i] = xs[i] > 0.0f ? xs[i] : 0.0f;
      break;
    case activation::sigmoid:
      for (std::int64_t i = 0; i < n; ++i)
        ys[i] = 1.0f / (1.0f + std::exp(-xs[i]));
      break;
    case activation::tanh:
      for (std::int64_t i = 0; i < n; ++i)
        ys[i] = std::tanh(xs[i]);
      break;
  }
}

void cpu_device::activation_backward(activation f, const tensor& x,
                                     const tensor& y, const tensor& dy,
                                     tensor& dx) {
  expect_cpu(x);
  expect_cpu(y);
  expect_cpu(dy);
  expect_cpu(dx);
  expect_same_size(x, dx);
  expect_same_size(dy, dx);
  const float* xs = x.data();
  const float* ys = y.data();
  const float* g = dy.data();
  float* d = dx.data();
  const auto n = x.numel();
  switch (f) {
    case activation::relu:
      // Both values loaded, then a select: branch-free, so it vectorizes
      // (a branch on the sign mispredicts half the time).
      for (std::int64_t i = 0; i < n; ++i) {
        const float gi = g[i];
        d[i] = xs[i] > 0.0f ? gi : 0.0f;
      }
      break;
    case activation::sigmoid:
      for (std::int64_t i = 0; i < n; ++i)
        d[i] = g[i] * ys[i] * (1.0f - ys[i]);
      break;
    case activation::tanh:
      for (std::int64_t i = 0; i < n; ++i)
        d[i] = g[i] * (1.0f - ys[i] * ys[i]);
      break;
  }
}

void cpu_device::softmax(const tensor& x, tensor& y) {
  expect_cpu(x);
  expect_cpu(y);
  expect_same_size(x, y);
  const auto rows = rows_of(x);
  const auto cols = cols_of(x);
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* in = x.data() + i * cols;
    float* out = y.data() + i * cols;
    const float m = *std::max_element(in, in + cols);
    float s = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      out[j] = std::exp(in[j] - m);
      s += out[j];
    }
    const float inv = 1.0f / s;
    for (std::int64_t j = 0; j < cols; ++j)
      out[j] *= inv;
  }
}

void cpu_device::softmax_backward(const tensor& y, const tensor& dy,
                                  tensor& dx) {
  expect_cpu(y);
  expect_cpu(dy);
  expect_cpu(dx);
  expect_same_size(y, dy);
  expect_same_size(y, dx);
  const auto rows = rows_of(y);
  const auto cols = cols_of(y);
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* ys = y.data() + i * cols;
    const float* g = dy.data() + i * cols;
    float* d = dx.data() + i * cols;
    float dot = 0;
    for (std::int64_t j = 0; j < cols; ++j)
      dot += g[j] * ys[j];
    for (std::int64_t j = 0; j < cols; ++j)
      d[j] = ys[j] * (g[j] - dot);
  }
}

loss_sums cpu_device::loss(loss_kind k, float huber_delta, const tensor& pred,
                           const tensor& target, float grad_scale,
                           tensor* dpred) {
  expect_cpu(pred);
  expect_cpu(target);
  const auto rows = rows_of(pred);
  const auto cols = cols_of(pred);
  float* d = nullptr;
  if (dpred != nullptr) {
    expect_cpu(*dpred);
    expect_same_size(pred, *dpred);
    d = dpred->data();
  }
  loss_sums out;
  if (k == loss_kind::cross_entropy) {
    TROUPE_CHECK(target.numel() == rows,
                 "cross_entropy needs one label per row");
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* z = pred.data() + i * cols;
      const auto label = static_cast<std::int64_t>(target.data()[i]);
      TROUPE_CHECK(label >= 0 && label < cols, "label out of range");
      const float m = *std::max_element(z, z + cols);
      float s = 0;
      std::int64_t arg = 0;
      for (std::int64_t j = 0; j < cols; ++j) {
        s += std::exp(z[j] - m);
        if (z[j] > z[arg])
          arg = j;
      }
      const float lse = m + std::log(s);
      out.loss += static_cast<double>(lse - z[label]);
      out.correct += arg == label ? 1 : 0;
      if (d != nullptr) {
        float* g = d + i * cols;
        const float inv = 1.0f / s;
        for (std::int64_t j = 0; j < cols; ++j)
          g[j] = grad_scale * (std::exp(z[j] - m) * inv);
        g[label] -= grad_scale;
      }
    }
    return out;
  }
  expect_same_size(pred, target);
  const float* p = pred.data();
  const float* t = target.data();
  const float per_output = 1.0f / static_cast<float>(cols);
  for (std::int64_t i = 0; i < rows; ++i) {
    double row_loss = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      const auto idx = i * cols + j;
      const float r = p[idx] - t[idx];
      float l = 0;
      float g = 0;
      if (k == loss_kind::mse) {
        l = r * r;
        g = 2.0f * r;
      } else {
        const float a = std::fabs(r);
        if (a <= huber_delta) {
          l = 0.5f * r * r;
          g = r;
        } else {
          l = huber_delta * (a - 0.5f * huber_delta);
          g = r > 0 ? huber_delta : -huber_delta;
        }
      }
      row_loss += l;
      if (d != nullptr)
        d[idx] = grad_scale * per_output * g;
    }
    out.loss += row_loss * per_output;
  }
  return out;
}

void cpu_device::optimizer_step(const optimizer_config& cfg, std::int64_t step,
                                const tensor& params_in, const tensor& grad,
                                tensor* state, tensor& params_out) {
  expect_cpu(params_in);
  expect_cpu(grad);
  expect_cpu(params_out);
  expect_same_size(params_in, grad);
  expect_same_size(params_in, params_out);
  TROUPE_CHECK(step >= 1, "optimizer steps count from 1");
  const auto n = params_in.numel();
  const float* __restrict p = params_in.data();
  const float* __restrict g = grad.data();
  float* __restrict out = params_out.data();
  const float lr = cfg.lr;
  const float wd = cfg.weight_decay;
  switch (cfg.kind) {
    case optimizer_kind::sgd:
      for (std::int64_t i = 0; i < n; ++i)
        out[i] = p[i] - lr * (g[i] + wd * p[i]);
      break;
    case optimizer_kind::momentum:
    case optimizer_kind::nesterov: {
      expect_same_size(params_in, state[0]);
      float* __restrict buf = state[0].data();
      const float mu = cfg.momentum;
      const bool nesterov = cfg.kind == optimizer_kind::nesterov;
      for (std::int64_t i = 0; i < n; ++i) {
        const float gi = g[i] + wd * p[i];
        const float b = mu * buf[i] + gi;
        buf[i] = b;
        const float dir = nesterov ? gi + mu * b : b;
        out[i] = p[i] - lr * dir;
      }
      break;
    }
    case optimizer_kind::adam:
    case optimizer_kind::adamw: {
      expect_same_size(params_in, state[0]);
      expect_same_size(params_in, state[1]);
      float* __restrict m = state[0].data();
      float* __restrict v = state[1].data();
      const float b1 = cfg.beta1;
      const float b2 = cfg.beta2;
      // Same order of operations as torch.optim.Adam (1.13, single tensor).
      const double bc1 =
          1.0 - std::pow(static_cast<double>(b1), static_cast<double>(step));
      const double bc2 =
          1.0 - std::pow(static_cast<double>(b2), static_cast<double>(step));
      const bool decoupled = cfg.kind == optimizer_kind::adamw;
      adam_kernel(n, p, g, m, v, out, b1, b2, static_cast<float>(lr / bc1),
                  static_cast<float>(1.0 / std::sqrt(bc2)), cfg.eps,
                  decoupled ? 0.0f : wd, decoupled ? 1.0f - lr * wd : 1.0f);
      break;
    }
  }
}

} // namespace troupe::devices::cpu_backend

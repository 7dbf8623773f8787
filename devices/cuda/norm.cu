#include "devices/cuda/check.cuh"
#include "devices/cuda/norm.cuh"
#include "devices/random.hpp"

namespace troupe::devices::cuda_backend {

namespace {

constexpr int threads = 256;

// The block's threads sum their doubles in a fixed tree; every thread
// gets the total.
__device__ double block_sum(double v, double* part) {
  part[threadIdx.x] = v;
  __syncthreads();
  for (int width = threads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width)
      part[threadIdx.x] += part[threadIdx.x + width];
    __syncthreads();
  }
  const double total = part[0];
  __syncthreads();
  return total;
}

// Element k of channel ch in [N, C, S]: sample k / S, position k % S.
__device__ std::int64_t at(std::int64_t k, std::int64_t ch, std::int64_t c,
                           std::int64_t spatial) {
  return ((k / spatial) * c + ch) * spatial + k % spatial;
}

// One block per channel: mean, then the variance around it (two passes).
__global__ void bn_stats(std::int64_t n, std::int64_t c, std::int64_t spatial,
                         const float* x, float* mean, float* var) {
  __shared__ double part[threads];
  const std::int64_t ch = blockIdx.x;
  const std::int64_t count = n * spatial;
  double s = 0;
  for (std::int64_t k = threadIdx.x; k < count; k += threads)
    s += x[at(k, ch, c, spatial)];
  const double m = block_sum(s, part) / static_cast<double>(count);
  double q = 0;
  for (std::int64_t k = threadIdx.x; k < count; k += threads) {
    const double d = x[at(k, ch, c, spatial)] - m;
    q += d * d;
  }
  const double v = block_sum(q, part) / static_cast<double>(count);
  if (threadIdx.x == 0) {
    mean[ch] = static_cast<float>(m);
    var[ch] = static_cast<float>(v);
  }
}

__global__ void bn_apply(std::int64_t total, std::int64_t c,
                         std::int64_t spatial, float eps, const float* x,
                         const float* scale, const float* shift,
                         const float* mean, const float* var, float* y) {
  TROUPE_FOR_EACH(i, total) {
    const auto ch = (i / spatial) % c;
    const float inv = 1.0f / sqrtf(var[ch] + eps);
    y[i] = (x[i] - mean[ch]) * inv * scale[ch] + shift[ch];
  }
}

// One block per channel: dshift = sum dy, dscale = sum dy * xhat.
__global__ void bn_grad_sums(std::int64_t n, std::int64_t c,
                             std::int64_t spatial, float eps, const float* x,
                             const float* mean, const float* var,
                             const float* dy, float* dscale, float* dshift) {
  __shared__ double part[threads];
  const std::int64_t ch = blockIdx.x;
  const std::int64_t count = n * spatial;
  const float inv = 1.0f / sqrtf(var[ch] + eps);
  double sd = 0, sdx = 0;
  for (std::int64_t k = threadIdx.x; k < count; k += threads) {
    const auto i = at(k, ch, c, spatial);
    sd += dy[i];
    sdx += static_cast<double>(dy[i]) * ((x[i] - mean[ch]) * inv);
  }
  const double total_d = block_sum(sd, part);
  const double total_dx = block_sum(sdx, part);
  if (threadIdx.x == 0) {
    dshift[ch] = static_cast<float>(total_d);
    dscale[ch] = static_cast<float>(total_dx);
  }
}

// dx = scale * inv / M * (M dy - dshift - xhat dscale), M = N * S.
__global__ void bn_dx(std::int64_t total, std::int64_t c, std::int64_t spatial,
                      std::int64_t count, float eps, const float* x,
                      const float* scale, const float* mean, const float* var,
                      const float* dy, const float* dscale, const float* dshift,
                      float* dx) {
  TROUPE_FOR_EACH(i, total) {
    const auto ch = (i / spatial) % c;
    const float inv = 1.0f / sqrtf(var[ch] + eps);
    const float xhat = (x[i] - mean[ch]) * inv;
    const float m = static_cast<float>(count);
    dx[i] = scale[ch] * inv / m * (m * dy[i] - dshift[ch] - xhat * dscale[ch]);
  }
}

// One block per row: its statistics, then its outputs.
__global__ void ln_forward(std::int64_t width, float eps, const float* x,
                           const float* scale, const float* shift, float* mean,
                           float* var, float* y) {
  __shared__ double part[threads];
  const std::int64_t r = blockIdx.x;
  const float* xr = x + r * width;
  double s = 0;
  for (std::int64_t j = threadIdx.x; j < width; j += threads)
    s += xr[j];
  const double m = block_sum(s, part) / static_cast<double>(width);
  double q = 0;
  for (std::int64_t j = threadIdx.x; j < width; j += threads) {
    const double d = xr[j] - m;
    q += d * d;
  }
  const double v = block_sum(q, part) / static_cast<double>(width);
  const float mf = static_cast<float>(m), vf = static_cast<float>(v);
  const float inv = 1.0f / sqrtf(vf + eps);
  for (std::int64_t j = threadIdx.x; j < width; j += threads)
    y[r * width + j] = (xr[j] - mf) * inv * scale[j] + shift[j];
  if (threadIdx.x == 0) {
    mean[r] = mf;
    var[r] = vf;
  }
}

// One block per row: g = dy * scale; dx = inv / W (W g - sum g - xhat sum g
// xhat).
__global__ void ln_dx(std::int64_t width, float eps, const float* x,
                      const float* scale, const float* mean, const float* var,
                      const float* dy, float* dx) {
  __shared__ double part[threads];
  const std::int64_t r = blockIdx.x;
  const float inv = 1.0f / sqrtf(var[r] + eps);
  double sg = 0, sgx = 0;
  for (std::int64_t j = threadIdx.x; j < width; j += threads) {
    const auto i = r * width + j;
    const float g = dy[i] * scale[j];
    sg += g;
    sgx += static_cast<double>(g) * ((x[i] - mean[r]) * inv);
  }
  const float total_g = static_cast<float>(block_sum(sg, part));
  const float total_gx = static_cast<float>(block_sum(sgx, part));
  const float w = static_cast<float>(width);
  for (std::int64_t j = threadIdx.x; j < width; j += threads) {
    const auto i = r * width + j;
    const float xhat = (x[i] - mean[r]) * inv;
    dx[i] = inv / w * (w * dy[i] * scale[j] - total_g - xhat * total_gx);
  }
}

// Column sums over rows in row order: dscale and dshift of layer norm.
__global__ void ln_param_grads(std::int64_t rows, std::int64_t width, float eps,
                               const float* x, const float* mean,
                               const float* var, const float* dy, float* dscale,
                               float* dshift) {
  TROUPE_FOR_EACH(j, width) {
    double sd = 0, sdx = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const auto i = r * width + j;
      const float inv = 1.0f / sqrtf(var[r] + eps);
      sd += dy[i];
      sdx += static_cast<double>(dy[i]) * ((x[i] - mean[r]) * inv);
    }
    dshift[j] = static_cast<float>(sd);
    dscale[j] = static_cast<float>(sdx);
  }
}

__global__ void bias_kernel(std::int64_t total, std::int64_t c,
                            std::int64_t spatial, const float* bias, float* y) {
  TROUPE_FOR_EACH(i, total) {
    y[i] += bias[(i / spatial) % c];
  }
}

__global__ void channel_sum_kernel(std::int64_t n, std::int64_t c,
                                   std::int64_t spatial, const float* dy,
                                   float* out) {
  __shared__ double part[threads];
  const std::int64_t ch = blockIdx.x;
  double s = 0;
  for (std::int64_t k = threadIdx.x; k < n * spatial; k += threads)
    s += dy[at(k, ch, c, spatial)];
  const double total = block_sum(s, part);
  if (threadIdx.x == 0)
    out[ch] = static_cast<float>(total);
}

__global__ void dropout_kernel(float rate, std::uint64_t key, const float* x,
                               float* mask, float* y, std::int64_t n) {
  const float keep = 1.0f / (1.0f - rate);
  TROUPE_FOR_EACH(i, n) {
    const float m =
        unit_float(key, static_cast<std::uint64_t>(i)) < rate ? 0.0f : keep;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

unsigned blocks(std::int64_t n) {
  return static_cast<unsigned>(n);
}

} // namespace

void batch_norm_forward(cudaStream_t s, bool training, std::int64_t n,
                        std::int64_t c, std::int64_t spatial, float eps,
                        const float* x, const float* scale, const float* shift,
                        float* mean, float* var, float* y) {
  if (training) {
    bn_stats<<<blocks(c), threads, 0, s>>>(n, c, spatial, x, mean, var);
    CUDA_CHECK_LAUNCH(bn_stats);
  }
  const auto total = n * c * spatial;
  bn_apply<<<grid_for(total), 256, 0, s>>>(total, c, spatial, eps, x, scale,
                                           shift, mean, var, y);
  CUDA_CHECK_LAUNCH(bn_apply);
}

void batch_norm_backward(cudaStream_t s, std::int64_t n, std::int64_t c,
                         std::int64_t spatial, float eps, const float* x,
                         const float* scale, const float* mean,
                         const float* var, const float* dy, float* dx,
                         float* dscale, float* dshift) {
  bn_grad_sums<<<blocks(c), threads, 0, s>>>(n, c, spatial, eps, x, mean, var,
                                             dy, dscale, dshift);
  CUDA_CHECK_LAUNCH(bn_grad_sums);
  if (dx == nullptr)
    return;
  const auto total = n * c * spatial;
  bn_dx<<<grid_for(total), 256, 0, s>>>(total, c, spatial, n * spatial, eps, x,
                                        scale, mean, var, dy, dscale, dshift,
                                        dx);
  CUDA_CHECK_LAUNCH(bn_dx);
}

void layer_norm_forward(cudaStream_t s, std::int64_t rows, std::int64_t width,
                        float eps, const float* x, const float* scale,
                        const float* shift, float* mean, float* var, float* y) {
  ln_forward<<<blocks(rows), threads, 0, s>>>(width, eps, x, scale, shift, mean,
                                              var, y);
  CUDA_CHECK_LAUNCH(ln_forward);
}

void layer_norm_backward(cudaStream_t s, std::int64_t rows, std::int64_t width,
                         float eps, const float* x, const float* scale,
                         const float* mean, const float* var, const float* dy,
                         float* dx, float* dscale, float* dshift) {
  ln_param_grads<<<grid_for(width), 256, 0, s>>>(rows, width, eps, x, mean, var,
                                                 dy, dscale, dshift);
  CUDA_CHECK_LAUNCH(ln_param_grads);
  if (dx == nullptr)
    return;
  ln_dx<<<blocks(rows), threads, 0, s>>>(width, eps, x, scale, mean, var, dy,
                                         dx);
  CUDA_CHECK_LAUNCH(ln_dx);
}

void add_channel_bias(cudaStream_t s, std::int64_t n, std::int64_t c,
                      std::int64_t spatial, const float* bias, float* y) {
  const auto total = n * c * spatial;
  bias_kernel<<<grid_for(total), 256, 0, s>>>(total, c, spatial, bias, y);
  CUDA_CHECK_LAUNCH(bias_kernel);
}

void channel_sums(cudaStream_t s, std::int64_t n, std::int64_t c,
                  std::int64_t spatial, const float* dy, float* out) {
  channel_sum_kernel<<<blocks(c), threads, 0, s>>>(n, c, spatial, dy, out);
  CUDA_CHECK_LAUNCH(channel_sum_kernel);
}

void dropout_forward(cudaStream_t s, float rate, std::uint64_t key,
                     const float* x, float* mask, float* y, std::int64_t n) {
  dropout_kernel<<<grid_for(n), 256, 0, s>>>(rate, key, x, mask, y, n);
  CUDA_CHECK_LAUNCH(dropout_kernel);
}

} // namespace troupe::devices::cuda_backend

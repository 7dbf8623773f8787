#include "devices/cuda/check.cuh"
#include "devices/cuda/optimizer.cuh"

namespace troupe::devices::cuda_backend {

namespace {

__global__ void sgd_kernel(const float* p, const float* g, float* out,
                           std::int64_t n, float lr, float wd) {
  TROUPE_FOR_EACH(i, n) out[i] = p[i] - lr * (g[i] + wd * p[i]);
}

__global__ void momentum_kernel(const float* p, const float* g, float* buf,
                                float* out, std::int64_t n, float lr, float mu,
                                float wd, bool nesterov) {
  TROUPE_FOR_EACH(i, n) {
    const float gi = g[i] + wd * p[i];
    const float b = mu * buf[i] + gi;
    buf[i] = b;
    const float dir = nesterov ? gi + mu * b : b;
    out[i] = p[i] - lr * dir;
  }
}

__global__ void adam_kernel(const float* p, const float* g, float* m, float* v,
                            float* out, std::int64_t n, float b1, float b2,
                            float step_size, float inv_bc2_sqrt, float eps,
                            float wd, float decay) {
  TROUPE_FOR_EACH(i, n) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) * inv_bc2_sqrt + eps;
    out[i] = p[i] * decay - step_size * mi / denom;
  }
}

} // namespace

void sgd(cudaStream_t s, const float* p, const float* g, float* out,
         std::int64_t n, float lr, float wd) {
  if (n == 0)
    return;
  sgd_kernel<<<grid_for(n), 256, 0, s>>>(p, g, out, n, lr, wd);
  CUDA_CHECK_LAUNCH(sgd_kernel);
}

void momentum(cudaStream_t s, const float* p, const float* g, float* buf,
              float* out, std::int64_t n, float lr, float mu, float wd,
              bool nesterov) {
  if (n == 0)
    return;
  momentum_kernel<<<grid_for(n), 256, 0, s>>>(p, g, buf, out, n, lr, mu, wd,
                                              nesterov);
  CUDA_CHECK_LAUNCH(momentum_kernel);
}

void adam(cudaStream_t s, const float* p, const float* g, float* m, float* v,
          float* out, std::int64_t n, float b1, float b2, float step_size,
          float inv_bc2_sqrt, float eps, float wd, float decay) {
  if (n == 0)
    return;
  adam_kernel<<<grid_for(n), 256, 0, s>>>(p, g, m, v, out, n, b1, b2, step_size,
                                          inv_bc2_sqrt, eps, wd, decay);
  CUDA_CHECK_LAUNCH(adam_kernel);
}

} // namespace troupe::devices::cuda_backend

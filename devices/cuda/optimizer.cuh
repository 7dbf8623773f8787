#pragma once
/// \file Optimizer steps on a parameter slice, with PyTorch's definitions
/// (the scalars that depend on the step are computed on the host, as the
/// CPU backend computes them).
#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::devices::cuda_backend {

/// out = p - lr * (g + wd * p).
void sgd(cudaStream_t s, const float* p, const float* g, float* out,
         std::int64_t n, float lr, float wd);
/// buf = mu * buf + (g + wd * p); out = p - lr * (nesterov ? g' + mu * buf :
/// buf).
void momentum(cudaStream_t s, const float* p, const float* g, float* buf,
              float* out, std::int64_t n, float lr, float mu, float wd,
              bool nesterov);
/// m, v as torch.optim.Adam; out = p * decay - step_size * m / (sqrt(v) *
/// inv_bc2_sqrt + eps). adam: decay 1, wd added to the gradient; adamw: wd
/// 0, decay = 1 - lr * weight_decay.
void adam(cudaStream_t s, const float* p, const float* g, float* m, float* v,
          float* out, std::int64_t n, float b1, float b2, float step_size,
          float inv_bc2_sqrt, float eps, float wd, float decay);

} // namespace troupe::devices::cuda_backend

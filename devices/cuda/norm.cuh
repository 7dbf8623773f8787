#pragma once
/// \file Normalization and dropout kernels: batch norm over [N, C, S] per
/// channel, layer norm per row, inverted dropout from a counter-based key.
/// Reductions in a fixed order without atomics, statistics in double, the
/// same formulas as the CPU backend: reruns give the same bits.
#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::devices::cuda_backend {

/// Training: mean and biased variance per channel into mean/var, then y.
/// Inference (training false): mean/var are read.
void batch_norm_forward(cudaStream_t s, bool training, std::int64_t n,
                        std::int64_t c, std::int64_t spatial, float eps,
                        const float* x, const float* scale, const float* shift,
                        float* mean, float* var, float* y);

/// dscale, dshift and (when not null) dx of a training forward.
void batch_norm_backward(cudaStream_t s, std::int64_t n, std::int64_t c,
                         std::int64_t spatial, float eps, const float* x,
                         const float* scale, const float* mean,
                         const float* var, const float* dy, float* dx,
                         float* dscale, float* dshift);

/// Per row of x [rows, width]: statistics into mean/var [rows], then y.
void layer_norm_forward(cudaStream_t s, std::int64_t rows, std::int64_t width,
                        float eps, const float* x, const float* scale,
                        const float* shift, float* mean, float* var, float* y);

void layer_norm_backward(cudaStream_t s, std::int64_t rows, std::int64_t width,
                         float eps, const float* x, const float* scale,
                         const float* mean, const float* var, const float* dy,
                         float* dx, float* dscale, float* dshift);

/// y[n, ch, s] += bias[ch] for y [N, C, S] (a convolution's bias).
void add_channel_bias(cudaStream_t s, std::int64_t n, std::int64_t c,
                      std::int64_t spatial, const float* bias, float* y);

/// out[ch] = sum over n and s of dy[n, ch, s] (a convolution's bias
/// gradient), one block per channel in a fixed order.
void channel_sums(cudaStream_t s, std::int64_t n, std::int64_t c,
                  std::int64_t spatial, const float* dy, float* out);

/// mask[i] = unit_float(key, i) < rate ? 0 : 1 / (1 - rate); y = x * mask.
void dropout_forward(cudaStream_t s, float rate, std::uint64_t key,
                     const float* x, float* mask, float* y, std::int64_t n);

} // namespace troupe::devices::cuda_backend

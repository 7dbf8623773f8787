#pragma once
/// \file Row-wise softmax and its backward pass, one thread per row in the
/// CPU backend's order of operations.
#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::devices::cuda_backend {

/// y = softmax(x) row-wise, x and y [rows, cols].
void softmax(cudaStream_t s, const float* x, float* y, std::int64_t rows,
             std::int64_t cols);
/// dx = y * (dy - sum(dy * y)) row-wise.
void softmax_backward(cudaStream_t s, const float* y, const float* dy,
                      float* dx, std::int64_t rows, std::int64_t cols);

} // namespace troupe::devices::cuda_backend

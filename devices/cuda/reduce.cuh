#pragma once
/// \file Reductions: column sums of a matrix and the sum of all elements.
/// Fixed reduction orders, no atomics: the same inputs give the same bits.
#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::devices::cuda_backend {

/// out[j] = sum_i x[i, j] (+ beta * out[j]) for x [rows, cols]; each column
/// summed over rows in row order, as the CPU backend does.
void sum_rows(cudaStream_t s, const float* x, std::int64_t rows,
              std::int64_t cols, float beta, float* out);

/// *out (device memory) = sum of x[0..n), accumulated in double.
void sum_all(cudaStream_t s, const float* x, std::int64_t n, double* out);

/// Threads of the one block that sum_all and the loss reductions use.
constexpr int reduce_threads = 256;

} // namespace troupe::devices::cuda_backend

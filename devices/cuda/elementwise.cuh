#pragma once
/// \file Elementwise kernels: fill, add, axpy, scale, bias rows and
/// activations. Each computes what the CPU backend's loop computes, element
/// by element, in the same order of operations.
#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::devices::cuda_backend {

void fill(cudaStream_t s, float* x, std::int64_t n, float value);
/// out = a + b (out may alias a or b).
void add(cudaStream_t s, const float* a, const float* b, float* out,
         std::int64_t n);
/// y += a * x.
/// out = a * b elementwise (out may alias a or b).
void multiply(cudaStream_t s, const float* a, const float* b, float* out,
              std::int64_t n);
void axpy(cudaStream_t s, float a, const float* x, float* y, std::int64_t n);
void scale(cudaStream_t s, float* x, std::int64_t n, float a);
/// y[i, :] += bias for every row i of y [rows, cols].
void add_row_vector(cudaStream_t s, float* y, const float* bias,
                    std::int64_t rows, std::int64_t cols);
/// f: 0 relu, 1 sigmoid, 2 tanh (devices::activation).
void activation_forward(cudaStream_t s, int f, const float* x, float* y,
                        std::int64_t n);
/// dx = dy * f'(x), given y = f(x).
void activation_backward(cudaStream_t s, int f, const float* x, const float* y,
                         const float* dy, float* dx, std::int64_t n);

} // namespace troupe::devices::cuda_backend

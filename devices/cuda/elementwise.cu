#include "devices/cuda/check.cuh"
#include "devices/cuda/elementwise.cuh"

namespace troupe::devices::cuda_backend {

namespace {

__global__ void fill_kernel(float* x, std::int64_t n, float v) {
  TROUPE_FOR_EACH(i, n) x[i] = v;
}

__global__ void add_kernel(const float* a, const float* b, float* out,
                           std::int64_t n) {
  TROUPE_FOR_EACH(i, n) out[i] = a[i] + b[i];
}

__global__ void multiply_kernel(const float* a, const float* b, float* out,
                                std::int64_t n) {
  TROUPE_FOR_EACH(i, n) out[i] = a[i] * b[i];
}

__global__ void axpy_kernel(float a, const float* x, float* y, std::int64_t n) {
  TROUPE_FOR_EACH(i, n) y[i] += a * x[i];
}

__global__ void scale_kernel(float* x, std::int64_t n, float a) {
  TROUPE_FOR_EACH(i, n) x[i] *= a;
}

__global__ void add_row_vector_kernel(float* y, const float* bias,
                                      std::int64_t rows, std::int64_t cols) {
  TROUPE_FOR_EACH(i, rows * cols) y[i] += bias[i % cols];
}

__global__ void activation_forward_kernel(int f, const float* x, float* y,
                                          std::int64_t n) {
  TROUPE_FOR_EACH(i, n) {
    const float v = x[i];
    if (f == 0)
      y[i] = v > 0.0f ? v : 0.0f;
    else if (f == 1)
      y[i] = 1.0f / (1.0f + expf(-v));
    else
      y[i] = tanhf(v);
  }
}

__global__ void activation_backward_kernel(int f, const float* x,
                                           const float* y, const float* dy,
                                           float* dx, std::int64_t n) {
  TROUPE_FOR_EACH(i, n) {
    if (f == 0)
      dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
    else if (f == 1)
      dx[i] = dy[i] * y[i] * (1.0f - y[i]);
    else
      dx[i] = dy[i] * (1.0f - y[i] * y[i]);
  }
}

} // namespace

void fill(cudaStream_t s, float* x, std::int64_t n, float value) {
  if (n == 0)
    return;
  fill_kernel<<<grid_for(n), 256, 0, s>>>(x, n, value);
  CUDA_CHECK_LAUNCH(fill_kernel);
}

void add(cudaStream_t s, const float* a, const float* b, float* out,
         std::int64_t n) {
  if (n == 0)
    return;
  add_kernel<<<grid_for(n), 256, 0, s>>>(a, b, out, n);
  CUDA_CHECK_LAUNCH(add_kernel);
}

void multiply(cudaStream_t s, const float* a, const float* b, float* out,
              std::int64_t n) {
  if (n == 0)
    return;
  multiply_kernel<<<grid_for(n), 256, 0, s>>>(a, b, out, n);
  CUDA_CHECK_LAUNCH(multiply_kernel);
}

void axpy(cudaStream_t s, float a, const float* x, float* y, std::int64_t n) {
  if (n == 0)
    return;
  axpy_kernel<<<grid_for(n), 256, 0, s>>>(a, x, y, n);
  CUDA_CHECK_LAUNCH(axpy_kernel);
}

void scale(cudaStream_t s, float* x, std::int64_t n, float a) {
  if (n == 0)
    return;
  scale_kernel<<<grid_for(n), 256, 0, s>>>(x, n, a);
  CUDA_CHECK_LAUNCH(scale_kernel);
}

void add_row_vector(cudaStream_t s, float* y, const float* bias,
                    std::int64_t rows, std::int64_t cols) {
  if (rows * cols == 0)
    return;
  add_row_vector_kernel<<<grid_for(rows * cols), 256, 0, s>>>(y, bias, rows,
                                                              cols);
  CUDA_CHECK_LAUNCH(add_row_vector_kernel);
}

void activation_forward(cudaStream_t s, int f, const float* x, float* y,
                        std::int64_t n) {
  if (n == 0)
    return;
  activation_forward_kernel<<<grid_for(n), 256, 0, s>>>(f, x, y, n);
  CUDA_CHECK_LAUNCH(activation_forward_kernel);
}

void activation_backward(cudaStream_t s, int f, const float* x, const float* y,
                         const float* dy, float* dx, std::int64_t n) {
  if (n == 0)
    return;
  activation_backward_kernel<<<grid_for(n), 256, 0, s>>>(f, x, y, dy, dx, n);
  CUDA_CHECK_LAUNCH(activation_backward_kernel);
}

} // namespace troupe::devices::cuda_backend

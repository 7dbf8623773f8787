#include "devices/cuda/check.cuh"
#include "devices/cuda/softmax.cuh"

namespace troupe::devices::cuda_backend {

namespace {

__global__ void softmax_kernel(const float* x, float* y, std::int64_t rows,
                               std::int64_t cols) {
  TROUPE_FOR_EACH(i, rows) {
    const float* in = x + i * cols;
    float* out = y + i * cols;
    float m = in[0];
    for (std::int64_t j = 1; j < cols; ++j)
      m = in[j] > m ? in[j] : m;
    float s = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      out[j] = expf(in[j] - m);
      s += out[j];
    }
    const float inv = 1.0f / s;
    for (std::int64_t j = 0; j < cols; ++j)
      out[j] *= inv;
  }
}

__global__ void softmax_backward_kernel(const float* y, const float* dy,
                                        float* dx, std::int64_t rows,
                                        std::int64_t cols) {
  TROUPE_FOR_EACH(i, rows) {
    const float* ys = y + i * cols;
    const float* g = dy + i * cols;
    float* d = dx + i * cols;
    float dot = 0;
    for (std::int64_t j = 0; j < cols; ++j)
      dot += g[j] * ys[j];
    for (std::int64_t j = 0; j < cols; ++j)
      d[j] = ys[j] * (g[j] - dot);
  }
}

} // namespace

void softmax(cudaStream_t s, const float* x, float* y, std::int64_t rows,
             std::int64_t cols) {
  if (rows == 0 || cols == 0)
    return;
  softmax_kernel<<<grid_for(rows), 256, 0, s>>>(x, y, rows, cols);
  CUDA_CHECK_LAUNCH(softmax_kernel);
}

void softmax_backward(cudaStream_t s, const float* y, const float* dy,
                      float* dx, std::int64_t rows, std::int64_t cols) {
  if (rows == 0 || cols == 0)
    return;
  softmax_backward_kernel<<<grid_for(rows), 256, 0, s>>>(y, dy, dx, rows, cols);
  CUDA_CHECK_LAUNCH(softmax_backward_kernel);
}

} // namespace troupe::devices::cuda_backend

#include "devices/cuda/check.cuh"
#include "devices/cuda/reduce.cuh"

namespace troupe::devices::cuda_backend {

namespace {

__global__ void sum_rows_kernel(const float* x, std::int64_t rows,
                                std::int64_t cols, float beta, float* out) {
  TROUPE_FOR_EACH(j, cols) {
    float acc = beta == 0.0f ? 0.0f : beta == 1.0f ? out[j] : out[j] * beta;
    for (std::int64_t i = 0; i < rows; ++i)
      acc += x[i * cols + j];
    out[j] = acc;
  }
}

// One block: each thread sums a strided share, then a tree in shared memory.
__global__ void sum_all_kernel(const float* x, std::int64_t n, double* out) {
  __shared__ double part[reduce_threads];
  double s = 0;
  for (std::int64_t i = threadIdx.x; i < n; i += reduce_threads)
    s += static_cast<double>(x[i]);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int width = reduce_threads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width)
      part[threadIdx.x] += part[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    *out = part[0];
}

} // namespace

void sum_rows(cudaStream_t s, const float* x, std::int64_t rows,
              std::int64_t cols, float beta, float* out) {
  if (cols == 0)
    return;
  sum_rows_kernel<<<grid_for(cols), 256, 0, s>>>(x, rows, cols, beta, out);
  CUDA_CHECK_LAUNCH(sum_rows_kernel);
}

void sum_all(cudaStream_t s, const float* x, std::int64_t n, double* out) {
  sum_all_kernel<<<1, reduce_threads, 0, s>>>(x, n, out);
  CUDA_CHECK_LAUNCH(sum_all_kernel);
}

} // namespace troupe::devices::cuda_backend

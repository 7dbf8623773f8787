#include "devices/cuda/check.cuh"
#include "devices/cuda/loss.cuh"
#include "devices/cuda/reduce.cuh"

namespace troupe::devices::cuda_backend {

namespace {

__global__ void cross_entropy_kernel(const float* z_all, const float* labels,
                                     std::int64_t rows, std::int64_t cols,
                                     float grad_scale, float* dz,
                                     double* row_loss, int* row_correct,
                                     int* bad_label) {
  TROUPE_FOR_EACH(i, rows) {
    const float* z = z_all + i * cols;
    const auto label = static_cast<std::int64_t>(labels[i]);
    if (label < 0 || label >= cols) {
      *bad_label = 1;
      row_loss[i] = 0;
      row_correct[i] = 0;
      continue;
    }
    float m = z[0];
    for (std::int64_t j = 1; j < cols; ++j)
      m = z[j] > m ? z[j] : m;
    float s = 0;
    std::int64_t arg = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      s += expf(z[j] - m);
      if (z[j] > z[arg])
        arg = j;
    }
    const float lse = m + logf(s);
    row_loss[i] = static_cast<double>(lse - z[label]);
    row_correct[i] = arg == label ? 1 : 0;
    if (dz != nullptr) {
      float* g = dz + i * cols;
      const float inv = 1.0f / s;
      for (std::int64_t j = 0; j < cols; ++j)
        g[j] = grad_scale * (expf(z[j] - m) * inv);
      g[label] -= grad_scale;
    }
  }
}

__global__ void regression_kernel(int kind, float delta, const float* p,
                                  const float* t, std::int64_t rows,
                                  std::int64_t cols, float grad_scale, float* d,
                                  double* row_loss) {
  const float per_output = 1.0f / static_cast<float>(cols);
  TROUPE_FOR_EACH(i, rows) {
    double sum = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
      const auto idx = i * cols + j;
      const float r = p[idx] - t[idx];
      float l = 0;
      float g = 0;
      if (kind == 1) {
        l = r * r;
        g = 2.0f * r;
      } else {
        const float a = fabsf(r);
        if (a <= delta) {
          l = 0.5f * r * r;
          g = r;
        } else {
          l = delta * (a - 0.5f * delta);
          g = r > 0 ? delta : -delta;
        }
      }
      sum += l;
      if (d != nullptr)
        d[idx] = grad_scale * per_output * g;
    }
    row_loss[i] = sum * per_output;
  }
}

__global__ void reduce_loss_kernel(const double* row_loss,
                                   const int* row_correct, const int* bad_label,
                                   std::int64_t rows, double* out) {
  __shared__ double loss[reduce_threads];
  __shared__ double correct[reduce_threads];
  double l = 0, c = 0;
  for (std::int64_t i = threadIdx.x; i < rows; i += reduce_threads) {
    l += row_loss[i];
    if (row_correct != nullptr)
      c += row_correct[i];
  }
  loss[threadIdx.x] = l;
  correct[threadIdx.x] = c;
  __syncthreads();
  for (int width = reduce_threads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) {
      loss[threadIdx.x] += loss[threadIdx.x + width];
      correct[threadIdx.x] += correct[threadIdx.x + width];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    out[0] = loss[0];
    out[1] = correct[0];
    out[2] = bad_label != nullptr ? *bad_label : 0;
  }
}

} // namespace

void cross_entropy(cudaStream_t s, const float* z, const float* labels,
                   std::int64_t rows, std::int64_t cols, float grad_scale,
                   float* dz, double* row_loss, int* row_correct,
                   int* bad_label) {
  if (rows == 0)
    return;
  cross_entropy_kernel<<<grid_for(rows), 256, 0, s>>>(
      z, labels, rows, cols, grad_scale, dz, row_loss, row_correct, bad_label);
  CUDA_CHECK_LAUNCH(cross_entropy_kernel);
}

void regression(cudaStream_t s, int kind, float delta, const float* pred,
                const float* target, std::int64_t rows, std::int64_t cols,
                float grad_scale, float* d, double* row_loss) {
  if (rows == 0)
    return;
  regression_kernel<<<grid_for(rows), 256, 0, s>>>(
      kind, delta, pred, target, rows, cols, grad_scale, d, row_loss);
  CUDA_CHECK_LAUNCH(regression_kernel);
}

void reduce_loss(cudaStream_t s, const double* row_loss, const int* row_correct,
                 const int* bad_label, std::int64_t rows, double* out) {
  reduce_loss_kernel<<<1, reduce_threads, 0, s>>>(row_loss, row_correct,
                                                  bad_label, rows, out);
  CUDA_CHECK_LAUNCH(reduce_loss_kernel);
}

} // namespace troupe::devices::cuda_backend

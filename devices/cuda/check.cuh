#pragma once
/// \file CUDA_CHECK and CUBLAS_CHECK: every CUDA and cuBLAS call of the
/// backend goes through one of them. A failure throws
/// troupe::devices::device_error naming the statement, file, line and the
/// error's name and text.
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace troupe::devices::cuda_backend {

[[noreturn]] void cuda_failure(const char* statement, const char* file,
                               int line, const char* error_name,
                               const char* error_text);

/// cuBLAS status names ("CUBLAS_STATUS_NOT_INITIALIZED", ...).
const char* cublas_status_name(cublasStatus_t status);

} // namespace troupe::devices::cuda_backend

#define CUDA_CHECK(statement)                                                  \
  do {                                                                         \
    const cudaError_t troupe_cuda_err_ = (statement);                          \
    if (troupe_cuda_err_ != cudaSuccess)                                       \
      ::troupe::devices::cuda_backend::cuda_failure(                           \
          #statement, __FILE__, __LINE__, cudaGetErrorName(troupe_cuda_err_),  \
          cudaGetErrorString(troupe_cuda_err_));                               \
  } while (false)

#define CUBLAS_CHECK(statement)                                                \
  do {                                                                         \
    const cublasStatus_t troupe_cublas_st_ = (statement);                      \
    if (troupe_cublas_st_ != CUBLAS_STATUS_SUCCESS)                            \
      ::troupe::devices::cuda_backend::cuda_failure(                           \
          #statement, __FILE__, __LINE__,                                      \
          ::troupe::devices::cuda_backend::cublas_status_name(                 \
              troupe_cublas_st_),                                              \
          "cuBLAS call failed");                                               \
  } while (false)

namespace troupe::devices::cuda_backend {

/// After a kernel launch: a bad launch configuration shows here, not at a
/// later, unrelated call.
inline void check_launch(const char* what, const char* file, int line) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    cuda_failure(what, file, line, cudaGetErrorName(err),
                 cudaGetErrorString(err));
}

/// Blocks of 256 threads for grid-stride loops over n elements.
inline unsigned grid_for(long long n) {
  const long long blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > 8192 ? 8192 : blocks);
}

} // namespace troupe::devices::cuda_backend

/// A grid-stride loop over [0, n) in a kernel: i takes each index once
/// across the grid.
#define TROUPE_FOR_EACH(i, n)                                                  \
  for (std::int64_t i =                                                        \
           blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;   \
       i < (n); i += static_cast<std::int64_t>(blockDim.x) * gridDim.x)

#define CUDA_CHECK_LAUNCH(kernel)                                              \
  ::troupe::devices::cuda_backend::check_launch("launch of " #kernel,          \
                                                __FILE__, __LINE__)

#pragma once
/// \file cuDNN for GPU workers: convolution and pooling, loaded with dlopen
/// the first time a device needs it (libcudnn.so.N of the headers' major
/// version), so dense-only jobs and machines without cuDNN never load it.
/// Every call goes through CUDNN_CHECK. Only algorithms cuDNN documents as
/// deterministic are used, in FP32 without TF32 (CUDNN_FMA_MATH).
#include "devices/device.hpp"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

namespace troupe::devices::cuda_backend {

/// Why cuDNN cannot be loaded; empty once it is.
std::string cudnn_error();

/// cuDNN status names ("CUDNN_STATUS_BAD_PARAM", ...), from cuDNN itself.
const char* cudnn_status_name(cudnnStatus_t status);

/// One cuDNN handle on one stream, with a workspace grown as needed. Not
/// thread-safe: one per device object.
class cudnn_ops {
public:
  /// Loads cuDNN if needed; throws device_error when it cannot.
  explicit cudnn_ops(cudaStream_t stream);
  ~cudnn_ops();
  cudnn_ops(const cudnn_ops&) = delete;
  cudnn_ops& operator=(const cudnn_ops&) = delete;

  /// y = conv(x, w) (bias added by the caller).
  void conv_forward(const window_geometry& g, const float* x, const float* w,
                    float* y);
  /// dw from x and dy; dx from w and dy when dx is not null.
  void conv_backward(const window_geometry& g, const float* x, const float* w,
                     const float* dy, float* dx, float* dw);
  void pool_forward(pool_kind k, const window_geometry& g, const float* x,
                    float* y);
  void pool_backward(pool_kind k, const window_geometry& g, const float* x,
                     const float* y, const float* dy, float* dx);

private:
  struct descriptors;
  void* workspace(std::size_t bytes);

  cudnnHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
};

} // namespace troupe::devices::cuda_backend

#define CUDNN_CHECK(statement)                                                 \
  do {                                                                         \
    const cudnnStatus_t troupe_cudnn_st_ = (statement);                        \
    if (troupe_cudnn_st_ != CUDNN_STATUS_SUCCESS)                              \
      ::troupe::devices::cuda_backend::cuda_failure(                           \
          #statement, __FILE__, __LINE__,                                      \
          ::troupe::devices::cuda_backend::cudnn_status_name(                  \
              troupe_cudnn_st_),                                               \
          "cuDNN call failed");                                                \
  } while (false)

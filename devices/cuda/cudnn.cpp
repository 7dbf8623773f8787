#include "devices/cuda/cudnn.hpp"

#include "devices/backends.hpp"
#include "devices/check.hpp"
#include "devices/cuda/check.cuh"

#include <fmt/format.h>

#include <dlfcn.h>

#include <climits>
#include <type_traits>

namespace troupe::devices::cuda_backend {

namespace {

// The cuDNN calls this backend makes.
struct cudnn_api {
  decltype(&cudnnCreate) create = nullptr;
  decltype(&cudnnDestroy) destroy = nullptr;
  decltype(&cudnnSetStream) set_stream = nullptr;
  decltype(&cudnnGetErrorString) error_string = nullptr;
  decltype(&cudnnCreateTensorDescriptor) create_tensor = nullptr;
  decltype(&cudnnDestroyTensorDescriptor) destroy_tensor = nullptr;
  decltype(&cudnnSetTensor4dDescriptor) set_tensor = nullptr;
  decltype(&cudnnCreateFilterDescriptor) create_filter = nullptr;
  decltype(&cudnnDestroyFilterDescriptor) destroy_filter = nullptr;
  decltype(&cudnnSetFilter4dDescriptor) set_filter = nullptr;
  decltype(&cudnnCreateConvolutionDescriptor) create_conv = nullptr;
  decltype(&cudnnDestroyConvolutionDescriptor) destroy_conv = nullptr;
  decltype(&cudnnSetConvolution2dDescriptor) set_conv = nullptr;
  decltype(&cudnnSetConvolutionMathType) set_math = nullptr;
  decltype(&cudnnGetConvolutionForwardWorkspaceSize) fwd_space = nullptr;
  decltype(&cudnnConvolutionForward) fwd = nullptr;
  decltype(&cudnnGetConvolutionBackwardDataWorkspaceSize) data_space = nullptr;
  decltype(&cudnnConvolutionBackwardData) bwd_data = nullptr;
  decltype(&cudnnGetConvolutionBackwardFilterWorkspaceSize) filter_space =
      nullptr;
  decltype(&cudnnConvolutionBackwardFilter) bwd_filter = nullptr;
  decltype(&cudnnCreatePoolingDescriptor) create_pool = nullptr;
  decltype(&cudnnDestroyPoolingDescriptor) destroy_pool = nullptr;
  decltype(&cudnnSetPooling2dDescriptor) set_pool = nullptr;
  decltype(&cudnnPoolingForward) pool_fwd = nullptr;
  decltype(&cudnnPoolingBackward) pool_bwd = nullptr;
  std::string error;
};

const cudnn_api& api() {
  static const cudnn_api loaded = [] {
    cudnn_api a;
    const auto soname = fmt::format("libcudnn.so.{}", CUDNN_MAJOR);
    void* lib = nullptr;
    std::string tried;
    for (const auto& path : {soname, "/usr/local/cuda/lib64/" + soname,
                             "/usr/local/cuda/lib/" + soname}) {
      lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib != nullptr)
        break;
      const char* e = dlerror();
      tried += tried.empty() ? "" : "; ";
      tried += e != nullptr ? e : path;
    }
    if (lib == nullptr) {
      a.error = fmt::format("cannot load cuDNN ({})", tried);
      return a;
    }
    auto load = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      if (fn == nullptr && a.error.empty())
        a.error = fmt::format("{} has no {}", soname, name);
    };
    load(a.create, "cudnnCreate");
    load(a.destroy, "cudnnDestroy");
    load(a.set_stream, "cudnnSetStream");
    load(a.error_string, "cudnnGetErrorString");
    load(a.create_tensor, "cudnnCreateTensorDescriptor");
    load(a.destroy_tensor, "cudnnDestroyTensorDescriptor");
    load(a.set_tensor, "cudnnSetTensor4dDescriptor");
    load(a.create_filter, "cudnnCreateFilterDescriptor");
    load(a.destroy_filter, "cudnnDestroyFilterDescriptor");
    load(a.set_filter, "cudnnSetFilter4dDescriptor");
    load(a.create_conv, "cudnnCreateConvolutionDescriptor");
    load(a.destroy_conv, "cudnnDestroyConvolutionDescriptor");
    load(a.set_conv, "cudnnSetConvolution2dDescriptor");
    load(a.set_math, "cudnnSetConvolutionMathType");
    load(a.fwd_space, "cudnnGetConvolutionForwardWorkspaceSize");
    load(a.fwd, "cudnnConvolutionForward");
    load(a.data_space, "cudnnGetConvolutionBackwardDataWorkspaceSize");
    load(a.bwd_data, "cudnnConvolutionBackwardData");
    load(a.filter_space, "cudnnGetConvolutionBackwardFilterWorkspaceSize");
    load(a.bwd_filter, "cudnnConvolutionBackwardFilter");
    load(a.create_pool, "cudnnCreatePoolingDescriptor");
    load(a.destroy_pool, "cudnnDestroyPoolingDescriptor");
    load(a.set_pool, "cudnnSetPooling2dDescriptor");
    load(a.pool_fwd, "cudnnPoolingForward");
    load(a.pool_bwd, "cudnnPoolingBackward");
    return a;
  }();
  return loaded;
}

int as_int(std::int64_t v) {
  TROUPE_CHECK(v >= 0 && v <= INT_MAX, "dimension too large for cuDNN");
  return static_cast<int>(v);
}

// Deterministic algorithms (cuDNN's documentation: no atomics).
constexpr auto fwd_algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
constexpr auto data_algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
constexpr auto filter_algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;

} // namespace

std::string cudnn_error() {
  return api().error;
}

const char* cudnn_status_name(cudnnStatus_t status) {
  const auto& a = api();
  return a.error_string != nullptr ? a.error_string(status)
                                   : "CUDNN_STATUS_(cuDNN not loaded)";
}

// The descriptors of one window op, made for the call and freed after it.
struct cudnn_ops::descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnPoolingDescriptor_t pool = nullptr;

  descriptors(const window_geometry& g, bool convolution,
              pool_kind k = pool_kind::max) {
    const auto& a = api();
    CUDNN_CHECK(a.create_tensor(&x));
    CUDNN_CHECK(a.create_tensor(&y));
    CUDNN_CHECK(a.set_tensor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                             as_int(g.batch), as_int(g.channels),
                             as_int(g.in_h), as_int(g.in_w)));
    CUDNN_CHECK(a.set_tensor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                             as_int(g.batch), as_int(g.out_channels),
                             as_int(g.out_h), as_int(g.out_w)));
    if (convolution) {
      CUDNN_CHECK(a.create_filter(&w));
      CUDNN_CHECK(a.set_filter(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                               as_int(g.out_channels), as_int(g.channels),
                               as_int(g.kernel), as_int(g.kernel)));
      CUDNN_CHECK(a.create_conv(&conv));
      // Cross-correlation, as PyTorch's Conv2d.
      CUDNN_CHECK(a.set_conv(conv, as_int(g.padding), as_int(g.padding),
                             as_int(g.stride), as_int(g.stride), 1, 1,
                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      CUDNN_CHECK(a.set_math(conv, CUDNN_FMA_MATH));
    } else {
      CUDNN_CHECK(a.create_pool(&pool));
      CUDNN_CHECK(a.set_pool(
          pool,
          k == pool_kind::max ? CUDNN_POOLING_MAX_DETERMINISTIC
                              : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
          CUDNN_NOT_PROPAGATE_NAN, as_int(g.kernel), as_int(g.kernel),
          as_int(g.padding), as_int(g.padding), as_int(g.stride),
          as_int(g.stride)));
    }
  }
  ~descriptors() {
    const auto& a = api();
    if (pool != nullptr)
      a.destroy_pool(pool);
    if (conv != nullptr)
      a.destroy_conv(conv);
    if (w != nullptr)
      a.destroy_filter(w);
    a.destroy_tensor(y);
    a.destroy_tensor(x);
  }
  descriptors(const descriptors&) = delete;
  descriptors& operator=(const descriptors&) = delete;
};

cudnn_ops::cudnn_ops(cudaStream_t stream) {
  const auto& a = api();
  if (!a.error.empty())
    throw device_error(a.error);
  CUDNN_CHECK(a.create(&handle_));
  CUDNN_CHECK(a.set_stream(handle_, stream));
}

cudnn_ops::~cudnn_ops() {
  // The caller selected the owning GPU and synchronized its stream.
  static_cast<void>(cudaFree(workspace_));
  if (handle_ != nullptr)
    api().destroy(handle_);
}

void* cudnn_ops::workspace(std::size_t bytes) {
  if (bytes <= workspace_bytes_)
    return workspace_;
  // Freed only once the stream's earlier work is done with it.
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaFree(workspace_));
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  CUDA_CHECK(cudaMalloc(&workspace_, bytes));
  workspace_bytes_ = bytes;
  return workspace_;
}

void cudnn_ops::conv_forward(const window_geometry& g, const float* x,
                             const float* w, float* y) {
  const auto& a = api();
  descriptors d(g, true);
  std::size_t bytes = 0;
  CUDNN_CHECK(a.fwd_space(handle_, d.x, d.w, d.conv, d.y, fwd_algo, &bytes));
  void* space = workspace(bytes);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(a.fwd(handle_, &one, d.x, x, d.w, w, d.conv, fwd_algo, space,
                    bytes, &zero, d.y, y));
}

void cudnn_ops::conv_backward(const window_geometry& g, const float* x,
                              const float* w, const float* dy, float* dx,
                              float* dw) {
  const auto& a = api();
  descriptors d(g, true);
  const float one = 1.0f, zero = 0.0f;
  std::size_t bytes = 0;
  CUDNN_CHECK(
      a.filter_space(handle_, d.x, d.y, d.conv, d.w, filter_algo, &bytes));
  void* space = workspace(bytes);
  CUDNN_CHECK(a.bwd_filter(handle_, &one, d.x, x, d.y, dy, d.conv, filter_algo,
                           space, bytes, &zero, d.w, dw));
  if (dx == nullptr)
    return;
  CUDNN_CHECK(a.data_space(handle_, d.w, d.y, d.conv, d.x, data_algo, &bytes));
  space = workspace(bytes);
  CUDNN_CHECK(a.bwd_data(handle_, &one, d.w, w, d.y, dy, d.conv, data_algo,
                         space, bytes, &zero, d.x, dx));
}

void cudnn_ops::pool_forward(pool_kind k, const window_geometry& g,
                             const float* x, float* y) {
  descriptors d(g, false, k);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(api().pool_fwd(handle_, d.pool, &one, d.x, x, &zero, d.y, y));
}

void cudnn_ops::pool_backward(pool_kind k, const window_geometry& g,
                              const float* x, const float* y, const float* dy,
                              float* dx) {
  descriptors d(g, false, k);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(api().pool_bwd(handle_, d.pool, &one, d.y, y, d.y, dy, d.x, x,
                             &zero, d.x, dx));
}

} // namespace troupe::devices::cuda_backend

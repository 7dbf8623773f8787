// The CUDA implementation of the device interface: cuBLAS for gemm, the
// kernels of devices/cuda/*.cu for everything else, all queued on one
// stream per device object (one per GPU actor). Ops return once queued;
// results reach the host through download(), sum() and loss(), which wait.
//
// The CUDA runtime is linked in statically and finds the driver itself;
// cuBLAS is loaded when a GPU is first looked for, so a CUDA build starts
// and runs on the CPU where neither a driver nor cuBLAS is installed.
#include "devices/cuda/cuda_device.hpp"

#include "devices/check.hpp"
#include "devices/cuda/check.cuh"
#include "devices/cuda/cudnn.hpp"
#include "devices/cuda/elementwise.cuh"
#include "devices/cuda/loss.cuh"
#include "devices/cuda/norm.cuh"
#include "devices/cuda/optimizer.cuh"
#include "devices/cuda/reduce.cuh"
#include "devices/cuda/softmax.cuh"
#include "devices/shapes.hpp"

#include <fmt/format.h>

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

namespace troupe::devices::cuda_backend {

void cuda_failure(const char* statement, const char* file, int line,
                  const char* error_name, const char* error_text) {
  throw device_error(fmt::format("CUDA: {} failed at {}:{}: {}: {}", statement,
                                 file, line, error_name, error_text));
}

const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

namespace {

// The cuBLAS calls this backend makes, from the library of the version
// its headers are (libcublas.so.13 for CUDA 13).
struct cublas_api {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasGetVersion_v2) get_version = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  std::string error; // why it could not be loaded; empty when it was
};

const cublas_api& cublas() {
  static const cublas_api api = [] {
    cublas_api a;
    const auto soname = fmt::format("libcublas.so.{}", CUBLAS_VER_MAJOR);
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
      a.error = fmt::format("cannot load cuBLAS ({})", tried);
      return a;
    }
    auto load = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      if (fn == nullptr && a.error.empty())
        a.error = fmt::format("{} has no {}", soname, name);
    };
    load(a.create, "cublasCreate_v2");
    load(a.destroy, "cublasDestroy_v2");
    load(a.set_stream, "cublasSetStream_v2");
    load(a.set_math_mode, "cublasSetMathMode");
    load(a.get_version, "cublasGetVersion_v2");
    load(a.sgemm, "cublasSgemm_v2");
    return a;
  }();
  return api;
}

void expect_cuda(const tensor& t) {
  TROUPE_CHECK(t.defined() && t.kind() == device_kind::cuda,
               "cuda device given a tensor that is not a defined CUDA tensor");
}

void expect_host(const tensor& t) {
  TROUPE_CHECK(t.defined() && t.kind() == device_kind::cpu,
               "cuda transfer given a host tensor that is not a CPU tensor");
}

void expect_same_size(const tensor& a, const tensor& b) {
  TROUPE_CHECK(a.numel() == b.numel(), "element counts differ");
}

int as_int(std::int64_t v) {
  TROUPE_CHECK(v >= 0 && v <= INT_MAX, "dimension too large for cuBLAS");
  return static_cast<int>(v);
}

// Device memory freed with cudaFree when the last tensor on it goes.
template <class T>
T* device_alloc(std::size_t count) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(1, count) * sizeof(T)));
  return static_cast<T*>(p);
}

// Frees device or pinned memory with its GPU current: the last tensor on
// a buffer may go on any thread, whose current device is 0 by default, and
// a free there would make a context on GPU 0. Errors cannot be reported
// from a deleter; the memory goes either way.
void free_on(int ordinal, float* p, bool pinned) {
  int previous = 0;
  const bool had = cudaGetDevice(&previous) == cudaSuccess;
  static_cast<void>(cudaSetDevice(ordinal));
  static_cast<void>(pinned ? cudaFreeHost(p) : cudaFree(p));
  if (had && previous != ordinal)
    static_cast<void>(cudaSetDevice(previous));
}

class cuda_device final : public device {
public:
  explicit cuda_device(int ordinal)
    : ordinal_(ordinal) {
    CUDA_CHECK(cudaSetDevice(ordinal_));
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal_));
    int version = 0;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const auto& blas = cublas();
    if (!blas.error.empty())
      throw device_error(fmt::format("cuda:{}: {}", ordinal_, blas.error));
    CUBLAS_CHECK(blas.create(&blas_));
    CUBLAS_CHECK(blas.set_stream(blas_, stream_));
    // Plain FP32 sgemm (no TF32 tensor-op rounding), as PyTorch's default.
    CUBLAS_CHECK(blas.set_math_mode(blas_, CUBLAS_DEFAULT_MATH));
    CUBLAS_CHECK(blas.get_version(blas_, &version));
    name_ = fmt::format("cuda:{} ({}, sm_{}{}, cuBLAS {}.{}.{})", ordinal_,
                        prop.name, prop.major, prop.minor, version / 10000,
                        version / 100 % 100, version % 100);
    scalars_dev_ = device_alloc<double>(3);
    void* pinned = nullptr;
    CUDA_CHECK(cudaMallocHost(&pinned, 3 * sizeof(double)));
    scalars_host_ = static_cast<double*>(pinned);
    bad_label_ = device_alloc<int>(1);
  }

  ~cuda_device() override {
    // Errors cannot be reported from here; the handles go either way.
    static_cast<void>(cudaSetDevice(ordinal_));
    static_cast<void>(cudaStreamSynchronize(stream_));
    dnn_.reset();
    static_cast<void>(cudaFree(row_loss_));
    static_cast<void>(cudaFree(row_correct_));
    static_cast<void>(cudaFree(bad_label_));
    static_cast<void>(cudaFree(scalars_dev_));
    static_cast<void>(cudaFreeHost(scalars_host_));
    if (blas_ != nullptr)
      static_cast<void>(cublas().destroy(blas_));
    static_cast<void>(cudaStreamDestroy(stream_));
  }

  cuda_device(const cuda_device&) = delete;
  cuda_device& operator=(const cuda_device&) = delete;

  device_kind kind() const override { return device_kind::cuda; }
  std::string name() const override { return name_; }

  tensor alloc(const shape_t& shape) override {
    use();
    const auto n = static_cast<std::size_t>(numel_of(shape));
    std::shared_ptr<float[]> owner(
        device_alloc<float>(n),
        [ordinal = ordinal_](float* p) { free_on(ordinal, p, false); });
    return tensor::wrap(shape, std::move(owner), 0, device_kind::cuda);
  }

  tensor host_alloc(const shape_t& shape) override {
    use();
    const auto n = static_cast<std::size_t>(numel_of(shape));
    void* p = nullptr;
    CUDA_CHECK(cudaMallocHost(&p, std::max<std::size_t>(1, n) * sizeof(float)));
    std::shared_ptr<float[]> owner(
        static_cast<float*>(p),
        [ordinal = ordinal_](float* q) { free_on(ordinal, q, true); });
    return tensor::wrap(shape, std::move(owner), 0, device_kind::cpu);
  }

  void upload(const tensor& src, tensor& dst) override {
    expect_host(src);
    expect_cuda(dst);
    expect_same_size(src, dst);
    use();
    CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.bytes(),
                               cudaMemcpyHostToDevice, stream_));
    // From pinned memory the copy runs later: src must live until then.
    in_flight_.push_back(src);
  }

  void download(const tensor& src, tensor& dst) override {
    expect_cuda(src);
    expect_host(dst);
    expect_same_size(src, dst);
    use();
    CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.bytes(),
                               cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }

  void synchronize() override {
    use();
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    in_flight_.clear();
  }

  void fill(tensor& x, float value) override {
    expect_cuda(x);
    use();
    cuda_backend::fill(stream_, x.data(), x.numel(), value);
  }

  void copy(const tensor& src, tensor& dst) override {
    expect_cuda(src);
    expect_cuda(dst);
    expect_same_size(src, dst);
    use();
    if (src.data() != dst.data())
      CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.bytes(),
                                 cudaMemcpyDeviceToDevice, stream_));
  }

  void gemm(bool ta, bool tb, float alpha, const tensor& a, const tensor& b,
            float beta, tensor& c) override {
    TROUPE_CHECK(a.rank() == 2, "gemm needs matrices");
    sgemm(ta, tb, alpha, a, 0, a.dim(1), b, beta, c);
  }

  void gemm_columns(bool ta, float alpha, const tensor& a, std::int64_t first,
                    std::int64_t count, const tensor& b, float beta,
                    tensor& c) override {
    TROUPE_CHECK(a.rank() == 2, "gemm needs matrices");
    sgemm(ta, false, alpha, a, first, count, b, beta, c);
  }

  void add_row_vector(tensor& y, const tensor& bias) override {
    expect_cuda(y);
    expect_cuda(bias);
    TROUPE_CHECK(bias.numel() == cols_of(y), "bias size differs from columns");
    use();
    cuda_backend::add_row_vector(stream_, y.data(), bias.data(), rows_of(y),
                                 cols_of(y));
  }

  void sum_rows(const tensor& x, float beta, tensor& out) override {
    expect_cuda(x);
    expect_cuda(out);
    TROUPE_CHECK(out.numel() == cols_of(x), "sum_rows output size differs");
    use();
    cuda_backend::sum_rows(stream_, x.data(), rows_of(x), cols_of(x), beta,
                           out.data());
  }

  void add(const tensor& a, const tensor& b, tensor& out) override {
    expect_cuda(a);
    expect_cuda(b);
    expect_cuda(out);
    expect_same_size(a, b);
    expect_same_size(a, out);
    use();
    cuda_backend::add(stream_, a.data(), b.data(), out.data(), a.numel());
  }

  void axpy(float a, const tensor& x, tensor& y) override {
    expect_cuda(x);
    expect_cuda(y);
    expect_same_size(x, y);
    use();
    cuda_backend::axpy(stream_, a, x.data(), y.data(), x.numel());
  }

  void scale(tensor& x, float a) override {
    expect_cuda(x);
    use();
    cuda_backend::scale(stream_, x.data(), x.numel(), a);
  }

  double sum(const tensor& x) override {
    expect_cuda(x);
    use();
    sum_all(stream_, x.data(), x.numel(), scalars_dev_);
    fetch_scalars(1);
    return scalars_host_[0];
  }

  void activation_forward(activation f, const tensor& x, tensor& y) override {
    expect_cuda(x);
    expect_cuda(y);
    expect_same_size(x, y);
    use();
    cuda_backend::activation_forward(stream_, static_cast<int>(f), x.data(),
                                     y.data(), x.numel());
  }

  void activation_backward(activation f, const tensor& x, const tensor& y,
                           const tensor& dy, tensor& dx) override {
    expect_cuda(x);
    expect_cuda(y);
    expect_cuda(dy);
    expect_cuda(dx);
    expect_same_size(x, dx);
    expect_same_size(dy, dx);
    use();
    cuda_backend::activation_backward(stream_, static_cast<int>(f), x.data(),
                                      y.data(), dy.data(), dx.data(),
                                      x.numel());
  }

  void softmax(const tensor& x, tensor& y) override {
    expect_cuda(x);
    expect_cuda(y);
    expect_same_size(x, y);
    use();
    cuda_backend::softmax(stream_, x.data(), y.data(), rows_of(x), cols_of(x));
  }

  void softmax_backward(const tensor& y, const tensor& dy,
                        tensor& dx) override {
    expect_cuda(y);
    expect_cuda(dy);
    expect_cuda(dx);
    expect_same_size(y, dy);
    expect_same_size(y, dx);
    use();
    cuda_backend::softmax_backward(stream_, y.data(), dy.data(), dx.data(),
                                   rows_of(y), cols_of(y));
  }

  loss_sums loss(loss_kind k, float huber_delta, const tensor& pred,
                 const tensor& target, float grad_scale,
                 tensor* dpred) override {
    expect_cuda(pred);
    expect_cuda(target);
    const auto rows = rows_of(pred);
    const auto cols = cols_of(pred);
    float* d = nullptr;
    if (dpred != nullptr) {
      expect_cuda(*dpred);
      expect_same_size(pred, *dpred);
      d = dpred->data();
    }
    use();
    reserve_rows(rows);
    loss_sums out;
    if (k == loss_kind::cross_entropy) {
      TROUPE_CHECK(target.numel() == rows,
                   "cross_entropy needs one label per row");
      CUDA_CHECK(cudaMemsetAsync(bad_label_, 0, sizeof(int), stream_));
      cross_entropy(stream_, pred.data(), target.data(), rows, cols, grad_scale,
                    d, row_loss_, row_correct_, bad_label_);
      reduce_loss(stream_, row_loss_, row_correct_, bad_label_, rows,
                  scalars_dev_);
      fetch_scalars(3);
      TROUPE_CHECK(scalars_host_[2] == 0, "label out of range");
      out.loss = scalars_host_[0];
      out.correct = static_cast<std::int64_t>(scalars_host_[1]);
      return out;
    }
    expect_same_size(pred, target);
    regression(stream_, k == loss_kind::mse ? 1 : 2, huber_delta, pred.data(),
               target.data(), rows, cols, grad_scale, d, row_loss_);
    reduce_loss(stream_, row_loss_, nullptr, nullptr, rows, scalars_dev_);
    fetch_scalars(1);
    out.loss = scalars_host_[0];
    return out;
  }

  void optimizer_step(const optimizer_config& cfg, std::int64_t step,
                      const tensor& params_in, const tensor& grad,
                      tensor* state, tensor& params_out) override {
    expect_cuda(params_in);
    expect_cuda(grad);
    expect_cuda(params_out);
    expect_same_size(params_in, grad);
    expect_same_size(params_in, params_out);
    TROUPE_CHECK(step >= 1, "optimizer steps count from 1");
    use();
    const auto n = params_in.numel();
    switch (cfg.kind) {
      case optimizer_kind::sgd:
        sgd(stream_, params_in.data(), grad.data(), params_out.data(), n,
            cfg.lr, cfg.weight_decay);
        break;
      case optimizer_kind::momentum:
      case optimizer_kind::nesterov:
        expect_cuda(state[0]);
        expect_same_size(params_in, state[0]);
        momentum(stream_, params_in.data(), grad.data(), state[0].data(),
                 params_out.data(), n, cfg.lr, cfg.momentum, cfg.weight_decay,
                 cfg.kind == optimizer_kind::nesterov);
        break;
      case optimizer_kind::adam:
      case optimizer_kind::adamw: {
        expect_cuda(state[0]);
        expect_cuda(state[1]);
        expect_same_size(params_in, state[0]);
        expect_same_size(params_in, state[1]);
        // The scalars exactly as the CPU backend computes them.
        const bool decoupled = cfg.kind == optimizer_kind::adamw;
        const double bc1 = 1.0 - std::pow(static_cast<double>(cfg.beta1),
                                          static_cast<double>(step));
        const double bc2 = 1.0 - std::pow(static_cast<double>(cfg.beta2),
                                          static_cast<double>(step));
        adam(stream_, params_in.data(), grad.data(), state[0].data(),
             state[1].data(), params_out.data(), n, cfg.beta1, cfg.beta2,
             static_cast<float>(cfg.lr / bc1),
             static_cast<float>(1.0 / std::sqrt(bc2)), cfg.eps,
             decoupled ? 0.0f : cfg.weight_decay,
             decoupled ? 1.0f - cfg.lr * cfg.weight_decay : 1.0f);
        break;
      }
    }
  }

  // Layers beyond dense: convolution and pooling on cuDNN (loaded when a
  // device first needs it), normalization and dropout on kernels of
  // norm.cu that follow the CPU backend's formulas.
  void conv2d_forward(const window_geometry& g, const tensor& x,
                      const tensor& w, const tensor& b, tensor& y) override {
    expect_window(g, x, y);
    expect_cuda(w);
    expect_cuda(b);
    use();
    dnn().conv_forward(g, x.data(), w.data(), y.data());
    cuda_backend::add_channel_bias(stream_, g.batch, g.out_channels,
                                   g.out_h * g.out_w, b.data(), y.data());
  }

  void conv2d_backward(const window_geometry& g, const tensor& x,
                       const tensor& w, const tensor& dy, tensor* dx,
                       tensor& dw, tensor& db) override {
    expect_window(g, x, dy);
    expect_cuda(w);
    expect_cuda(dw);
    expect_cuda(db);
    if (dx != nullptr)
      expect_window(g, *dx, dy);
    use();
    dnn().conv_backward(g, x.data(), w.data(), dy.data(),
                        dx != nullptr ? dx->data() : nullptr, dw.data());
    cuda_backend::channel_sums(stream_, g.batch, g.out_channels,
                               g.out_h * g.out_w, dy.data(), db.data());
  }

  void pool_forward(pool_kind k, const window_geometry& g, const tensor& x,
                    tensor& y, tensor&) override {
    expect_window(g, x, y);
    use();
    dnn().pool_forward(k, g, x.data(), y.data());
  }

  void pool_backward(pool_kind k, const window_geometry& g, const tensor& x,
                     const tensor& y, const tensor&, const tensor& dy,
                     tensor& dx) override {
    expect_window(g, x, y);
    expect_window(g, dx, dy);
    use();
    dnn().pool_backward(k, g, x.data(), y.data(), dy.data(), dx.data());
  }

  void batch_norm_forward(bool training, std::int64_t batch,
                          std::int64_t channels, std::int64_t spatial,
                          float eps, const tensor& x, const tensor& scale,
                          const tensor& shift, tensor& mean, tensor& var,
                          tensor& y) override {
    for (const tensor* t : {&x, &scale, &shift})
      expect_cuda(*t);
    expect_cuda(y);
    expect_cuda(mean);
    expect_cuda(var);
    TROUPE_CHECK(x.numel() == batch * channels * spatial &&
                     y.numel() == x.numel() && mean.numel() == channels,
                 "batch_norm sizes differ");
    use();
    cuda_backend::batch_norm_forward(
        stream_, training, batch, channels, spatial, eps, x.data(),
        scale.data(), shift.data(), mean.data(), var.data(), y.data());
  }

  void batch_norm_backward(std::int64_t batch, std::int64_t channels,
                           std::int64_t spatial, float eps, const tensor& x,
                           const tensor& scale, const tensor& mean,
                           const tensor& var, const tensor& dy, tensor* dx,
                           tensor& dscale, tensor& dshift) override {
    for (const tensor* t : {&x, &scale, &mean, &var, &dy})
      expect_cuda(*t);
    expect_cuda(dscale);
    expect_cuda(dshift);
    use();
    cuda_backend::batch_norm_backward(
        stream_, batch, channels, spatial, eps, x.data(), scale.data(),
        mean.data(), var.data(), dy.data(),
        dx != nullptr ? dx->data() : nullptr, dscale.data(), dshift.data());
  }

  void layer_norm_forward(float eps, const tensor& x, const tensor& scale,
                          const tensor& shift, tensor& mean, tensor& var,
                          tensor& y) override {
    for (const tensor* t : {&x, &scale, &shift})
      expect_cuda(*t);
    expect_cuda(y);
    expect_cuda(mean);
    expect_cuda(var);
    TROUPE_CHECK(x.rank() == 2 && y.numel() == x.numel(),
                 "layer_norm needs [rows, width]");
    use();
    cuda_backend::layer_norm_forward(stream_, x.dim(0), x.dim(1), eps, x.data(),
                                     scale.data(), shift.data(), mean.data(),
                                     var.data(), y.data());
  }

  void layer_norm_backward(float eps, const tensor& x, const tensor& scale,
                           const tensor& mean, const tensor& var,
                           const tensor& dy, tensor* dx, tensor& dscale,
                           tensor& dshift) override {
    for (const tensor* t : {&x, &scale, &mean, &var, &dy})
      expect_cuda(*t);
    expect_cuda(dscale);
    expect_cuda(dshift);
    TROUPE_CHECK(x.rank() == 2, "layer_norm needs [rows, width]");
    use();
    cuda_backend::layer_norm_backward(
        stream_, x.dim(0), x.dim(1), eps, x.data(), scale.data(), mean.data(),
        var.data(), dy.data(), dx != nullptr ? dx->data() : nullptr,
        dscale.data(), dshift.data());
  }

  void dropout_forward(float rate, std::uint64_t key, const tensor& x,
                       tensor& mask, tensor& y) override {
    expect_cuda(x);
    expect_cuda(mask);
    expect_cuda(y);
    expect_same_size(x, mask);
    expect_same_size(x, y);
    use();
    cuda_backend::dropout_forward(stream_, rate, key, x.data(), mask.data(),
                                  y.data(), x.numel());
  }

  void dropout_backward(const tensor& mask, const tensor& dy,
                        tensor& dx) override {
    expect_cuda(mask);
    expect_cuda(dy);
    expect_cuda(dx);
    expect_same_size(mask, dy);
    expect_same_size(dy, dx);
    use();
    // dx = dy * mask: the elementwise product the mask was made for.
    cuda_backend::multiply(stream_, dy.data(), mask.data(), dx.data(),
                           dy.numel());
  }

private:
  // Every op names its GPU: actors on one thread may use different GPUs.
  void use() { CUDA_CHECK(cudaSetDevice(ordinal_)); }

  static void expect_window(const window_geometry& g, const tensor& x,
                            const tensor& y) {
    expect_cuda(x);
    expect_cuda(y);
    TROUPE_CHECK(x.numel() == g.batch * g.channels * g.in_h * g.in_w &&
                     y.numel() == g.batch * g.out_channels * g.out_h * g.out_w,
                 "window op sizes differ from its geometry");
  }

  // cuDNN, loaded and given a handle the first time a layer needs it.
  cudnn_ops& dnn() {
    if (!dnn_)
      dnn_ = std::make_unique<cudnn_ops>(stream_);
    return *dnn_;
  }

  void fetch_scalars(int count) {
    CUDA_CHECK(cudaMemcpyAsync(scalars_host_, scalars_dev_,
                               static_cast<std::size_t>(count) * sizeof(double),
                               cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }

  void reserve_rows(std::int64_t rows) {
    if (rows <= rows_capacity_)
      return;
    // Queued kernels may still read the old buffers: cudaFree waits.
    CUDA_CHECK(cudaFree(row_loss_));
    CUDA_CHECK(cudaFree(row_correct_));
    row_loss_ = nullptr;
    row_correct_ = nullptr;
    row_loss_ = device_alloc<double>(static_cast<std::size_t>(rows));
    row_correct_ = device_alloc<int>(static_cast<std::size_t>(rows));
    rows_capacity_ = rows;
  }

  // c = alpha * op(a[:, first : first + cols]) * op(b) + beta * c, all
  // row-major. cuBLAS is column-major, where a row-major matrix reads as
  // its transpose: so it computes c^T = op(b)^T * op(a)^T.
  void sgemm(bool ta, bool tb, float alpha, const tensor& a, std::int64_t first,
             std::int64_t cols, const tensor& b, float beta, tensor& c) {
    expect_cuda(a);
    expect_cuda(b);
    expect_cuda(c);
    const auto [m, n, k] = check_gemm(ta, tb, a, first, cols, b, c);
    if (m == 0 || n == 0)
      return;
    use();
    if (k == 0) {
      // cuBLAS would leave c alone; the definition scales it by beta.
      if (beta == 0.0f)
        cuda_backend::fill(stream_, c.data(), c.numel(), 0.0f);
      else if (beta != 1.0f)
        cuda_backend::scale(stream_, c.data(), c.numel(), beta);
      return;
    }
    CUBLAS_CHECK(cublas().sgemm(
        blas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
        as_int(n), as_int(m), as_int(k), &alpha, b.data(), as_int(b.dim(1)),
        a.data() + first, as_int(a.dim(1)), &beta, c.data(), as_int(n)));
  }

  int ordinal_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  double* scalars_dev_ = nullptr;  // results of reductions
  double* scalars_host_ = nullptr; // pinned, 3 values
  double* row_loss_ = nullptr;
  int* row_correct_ = nullptr;
  int* bad_label_ = nullptr;
  std::int64_t rows_capacity_ = 0;
  std::vector<tensor> in_flight_; // uploaded host tensors, until a sync
  std::unique_ptr<cudnn_ops> dnn_;
};

} // namespace

std::string cublas_error() {
  return cublas().error;
}

std::vector<device_info> list_devices(std::string* why_not) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // No driver, or a driver too old for this runtime: no GPU to use.
    static_cast<void>(cudaGetLastError());
    if (why_not != nullptr)
      *why_not = fmt::format("no usable GPU: cudaGetDeviceCount: {}: {}",
                             cudaGetErrorName(err), cudaGetErrorString(err));
    return {};
  }
  if (count == 0) {
    if (why_not != nullptr)
      *why_not = "no GPU found";
    return {};
  }
  if (!cublas().error.empty()) {
    // GPUs, but no way to run gemm on them: none to offer.
    if (why_not != nullptr)
      *why_not = fmt::format("{} GPU(s) but no usable cuBLAS: {}", count,
                             cublas().error);
    return {};
  }
  std::vector<device_info> out;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    device_info d;
    d.id = fmt::format("cuda:{}", i);
    d.kind = device_kind::cuda;
    d.ordinal = i;
    d.name = prop.name;
    d.memory_bytes = static_cast<std::int64_t>(prop.totalGlobalMem);
    d.compute_capability = fmt::format("{}.{}", prop.major, prop.minor);
    out.push_back(std::move(d));
  }
  return out;
}

std::unique_ptr<device> make_device(int ordinal) {
  std::string why;
  const auto gpus = list_devices(&why);
  if (ordinal < 0 || static_cast<std::size_t>(ordinal) >= gpus.size())
    throw device_error(
        gpus.empty()
            ? fmt::format("cuda:{}: {}", ordinal, why)
            : fmt::format("cuda:{}: this machine has {} GPU(s) (cuda:0 to "
                          "cuda:{})",
                          ordinal, gpus.size(), gpus.size() - 1));
  return std::make_unique<cuda_device>(ordinal);
}

} // namespace troupe::devices::cuda_backend

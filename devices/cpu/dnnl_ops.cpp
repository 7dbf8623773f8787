// The CPU backend's convolution, pooling and normalization on oneDNN, the
// library PyTorch's CPU path runs. Activations stay in PyTorch's plain
// NCHW layout between layers; oneDNN picks its kernels for that layout.
#include "devices/cpu/cpu_device.hpp"

#include "devices/check.hpp"
#include "devices/random.hpp"

#include <dnnl.hpp>
#include <omp.h>

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include <string>
#include <unordered_map>

namespace troupe::devices::cpu_backend {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

// One engine, stream and primitive cache per thread. Primitives are
// created once per shape (JIT compilation costs milliseconds) and reused;
// a thread-local cache needs no lock, and every thread builds the same
// primitive for the same shape, so results do not depend on the thread.
struct context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  context() {
    // Parallelism comes from actors: oneDNN runs one OpenMP thread per
    // caller (the setting is per calling thread).
    omp_set_num_threads(1);
  }
};

context& ctx() {
  thread_local context c;
  return c;
}

template <class T, class Make>
T& cached(const std::string& key, Make make) {
  thread_local std::unordered_map<std::string, T> cache;
  auto it = cache.find(key);
  if (it == cache.end())
    it = cache.emplace(key, make()).first;
  return it->second;
}

memory wrap(const memory::desc& md, const tensor& t) {
  TROUPE_CHECK(t.defined() && t.kind() == device_kind::cpu,
               "oneDNN op given a tensor that is not a defined CPU tensor");
  TROUPE_CHECK(static_cast<std::size_t>(t.numel()) * sizeof(float) >=
                   md.get_size(),
               "oneDNN op given a tensor smaller than its shape");
  return memory(md, ctx().engine, const_cast<float*>(t.data()));
}

std::string key_of(const char* op, const window_geometry& g) {
  return fmt::format("{}:{},{},{},{},{},{},{},{},{},{}", op, g.batch,
                     g.channels, g.in_h, g.in_w, g.out_channels, g.out_h,
                     g.out_w, g.kernel, g.stride, g.padding);
}

struct conv_descs {
  memory::desc src, weights, bias, dst;
  memory::dims strides, pad_l, pad_r;

  explicit conv_descs(const window_geometry& g)
    : src({g.batch, g.channels, g.in_h, g.in_w}, f32, tag::nchw)
    , weights({g.out_channels, g.channels, g.kernel, g.kernel}, f32, tag::oihw)
    , bias({g.out_channels}, f32, tag::x)
    , dst({g.batch, g.out_channels, g.out_h, g.out_w}, f32, tag::nchw)
    , strides{g.stride, g.stride}
    , pad_l{g.padding, g.padding} {
    // The right/bottom padding that makes oneDNN's output size ours (a
    // stride may leave the last input rows unused, as in PyTorch).
    pad_r = {(g.out_h - 1) * g.stride + g.kernel - g.in_h - g.padding,
             (g.out_w - 1) * g.stride + g.kernel - g.in_w - g.padding};
  }
};

// A user tensor in the layout a primitive wants: the tensor itself when
// the layouts agree, else a buffer of the primitive's own, filled (inputs)
// or emptied (outputs) by a cached reorder.
struct staged {
  memory::desc want;
  memory buffer;          // the primitive's layout, when it differs
  dnnl::reorder to, from; // user -> buffer, buffer -> user

  staged() = default;
  staged(const memory::desc& user, const memory::desc& wanted)
    : want(wanted) {
    if (user == wanted)
      return;
    auto& eng = ctx().engine;
    buffer = memory(wanted, eng);
    memory u(user, eng, nullptr);
    to = dnnl::reorder(u, buffer);
    from = dnnl::reorder(buffer, u);
  }
  bool differs() const { return static_cast<bool>(buffer); }
  // The memory to hand the primitive for an input held in `user`.
  memory in(const memory& user) {
    if (!differs())
      return user;
    to.execute(ctx().stream, const_cast<memory&>(user), buffer);
    return buffer;
  }
  // The memory to hand the primitive for an output; call out() after.
  memory target(const memory& user) { return differs() ? buffer : user; }
  void out(const memory& user) {
    if (differs())
      from.execute(ctx().stream, buffer, const_cast<memory&>(user));
  }
};

// Convolutions run in the layouts oneDNN picks for the shape (blocked
// channels on AVX-512), with reorders from and to PyTorch's NCHW at the
// edges, as PyTorch's own oneDNN path does: measured here, the plain-layout
// kernels were about half as fast.
struct conv_prims {
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  staged fwd_src, fwd_weights, fwd_dst;
  staged bd_diff_dst, bd_weights, bd_diff_src;
  staged bw_src, bw_diff_dst, bw_diff_weights;
};

conv_prims& conv_for(const window_geometry& g) {
  return cached<conv_prims>(key_of("conv", g), [&] {
    conv_descs d(g);
    auto& eng = ctx().engine;
    const auto algo = dnnl::algorithm::convolution_direct;
    auto any = [](const memory::desc& m) {
      return memory::desc(m.dims(), f32, tag::any);
    };
    dnnl::convolution_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, algo, any(d.src), any(d.weights),
         d.bias, any(d.dst), d.strides, d.pad_l, d.pad_r},
        eng);
    dnnl::convolution_backward_data::primitive_desc data_pd(
        {algo, any(d.src), any(d.weights), any(d.dst), d.strides, d.pad_l,
         d.pad_r},
        eng, fwd_pd);
    dnnl::convolution_backward_weights::primitive_desc weights_pd(
        {algo, any(d.src), any(d.weights), d.bias, any(d.dst), d.strides,
         d.pad_l, d.pad_r},
        eng, fwd_pd);
    conv_prims p;
    p.fwd = dnnl::convolution_forward(fwd_pd);
    p.bwd_data = dnnl::convolution_backward_data(data_pd);
    p.bwd_weights = dnnl::convolution_backward_weights(weights_pd);
    p.fwd_src = staged(d.src, fwd_pd.src_desc());
    p.fwd_weights = staged(d.weights, fwd_pd.weights_desc());
    p.fwd_dst = staged(d.dst, fwd_pd.dst_desc());
    p.bd_diff_dst = staged(d.dst, data_pd.diff_dst_desc());
    p.bd_weights = staged(d.weights, data_pd.weights_desc());
    p.bd_diff_src = staged(d.src, data_pd.diff_src_desc());
    p.bw_src = staged(d.src, weights_pd.src_desc());
    p.bw_diff_dst = staged(d.dst, weights_pd.diff_dst_desc());
    p.bw_diff_weights = staged(d.weights, weights_pd.diff_weights_desc());
    return p;
  });
}

dnnl::algorithm pool_algorithm(pool_kind k) {
  return k == pool_kind::max ? dnnl::algorithm::pooling_max
                             : dnnl::algorithm::pooling_avg_include_padding;
}

struct pool_prims {
  dnnl::pooling_forward::primitive_desc fwd_pd;
  dnnl::pooling_forward fwd;
  dnnl::pooling_backward bwd;
};

pool_prims& pool_for(pool_kind k, const window_geometry& g) {
  return cached<
      pool_prims>(key_of(k == pool_kind::max ? "maxpool" : "avgpool", g), [&] {
    memory::desc src({g.batch, g.channels, g.in_h, g.in_w}, f32, tag::nchw);
    memory::desc dst({g.batch, g.channels, g.out_h, g.out_w}, f32, tag::nchw);
    const memory::dims strides{g.stride, g.stride};
    const memory::dims kernel{g.kernel, g.kernel};
    const memory::dims pad_l{g.padding, g.padding};
    const memory::dims pad_r{
        (g.out_h - 1) * g.stride + g.kernel - g.in_h - g.padding,
        (g.out_w - 1) * g.stride + g.kernel - g.in_w - g.padding};
    auto& eng = ctx().engine;
    dnnl::pooling_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, pool_algorithm(k), src, dst,
         strides, kernel, pad_l, pad_r},
        eng);
    dnnl::pooling_backward::primitive_desc bwd_pd(
        {pool_algorithm(k), src, dst, strides, kernel, pad_l, pad_r}, eng,
        fwd_pd);
    return pool_prims{fwd_pd, dnnl::pooling_forward(fwd_pd),
                      dnnl::pooling_backward(bwd_pd)};
  });
}

const auto scale_shift =
    dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

struct bn_prims {
  memory::desc data, stats;
  dnnl::batch_normalization_forward train;
  dnnl::batch_normalization_forward infer;
  dnnl::batch_normalization_backward bwd;
};

bn_prims& bn_for(std::int64_t n, std::int64_t c, std::int64_t s, float eps) {
  return cached<bn_prims>(fmt::format("bn:{},{},{},{}", n, c, s, eps), [&] {
    memory::desc data({n, c, s, 1}, f32, tag::nchw);
    memory::desc stats({c}, f32, tag::x);
    auto& eng = ctx().engine;
    dnnl::batch_normalization_forward::primitive_desc train_pd(
        {dnnl::prop_kind::forward_training, data, eps, scale_shift}, eng);
    dnnl::batch_normalization_forward::primitive_desc infer_pd(
        {dnnl::prop_kind::forward_inference, data, eps,
         scale_shift | dnnl::normalization_flags::use_global_stats},
        eng);
    dnnl::batch_normalization_backward::primitive_desc bwd_pd(
        {dnnl::prop_kind::backward, data, data, eps, scale_shift}, eng,
        train_pd);
    return bn_prims{data, stats, dnnl::batch_normalization_forward(train_pd),
                    dnnl::batch_normalization_forward(infer_pd),
                    dnnl::batch_normalization_backward(bwd_pd)};
  });
}

struct ln_prims {
  memory::desc data, stats, scale;
  dnnl::layer_normalization_forward fwd;
  dnnl::layer_normalization_backward bwd;
};

ln_prims& ln_for(std::int64_t rows, std::int64_t width, float eps) {
  return cached<ln_prims>(fmt::format("ln:{},{},{}", rows, width, eps), [&] {
    memory::desc data({rows, width}, f32, tag::ab);
    memory::desc stats({rows}, f32, tag::a);
    memory::desc scale({width}, f32, tag::a);
    auto& eng = ctx().engine;
    dnnl::layer_normalization_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, data, eps, scale_shift}, eng);
    dnnl::layer_normalization_backward::primitive_desc bwd_pd(
        {dnnl::prop_kind::backward, data, data, eps, scale_shift}, eng, fwd_pd);
    return ln_prims{data, stats, scale,
                    dnnl::layer_normalization_forward(fwd_pd),
                    dnnl::layer_normalization_backward(bwd_pd)};
  });
}

void check_window(const window_geometry& g, const tensor& x, const tensor& y) {
  TROUPE_CHECK(x.numel() == g.batch * g.channels * g.in_h * g.in_w,
               "window op input size differs from its geometry");
  TROUPE_CHECK(y.numel() == g.batch * g.out_channels * g.out_h * g.out_w,
               "window op output size differs from its geometry");
}

} // namespace

namespace {

// A matmul primitive per shape with its own scratchpad: dnnl_sgemm
// allocates its packing buffers on every call, and their pages fault in
// afresh (measured here: 368-552 page faults per 512x1024x1024 call, 15-20%
// slower than the primitive, which faults none).
struct matmul_prims {
  dnnl::matmul op;
  memory scratchpad;
  memory::desc a, b, c;
};

matmul_prims& matmul_for(bool ta, bool tb, std::int64_t m, std::int64_t n,
                         std::int64_t k, std::int64_t lda, std::int64_t ldb,
                         std::int64_t ldc) {
  return cached<matmul_prims>(
      fmt::format("mm:{},{},{},{},{},{},{},{}", ta, tb, m, n, k, lda, ldb, ldc),
      [&] {
        // Row-major with leading dimensions; a transpose is a swap of
        // strides.
        const memory::desc a({m, k}, f32,
                             ta ? memory::dims{1, lda} : memory::dims{lda, 1});
        const memory::desc b({k, n}, f32,
                             tb ? memory::dims{1, ldb} : memory::dims{ldb, 1});
        const memory::desc c({m, n}, f32, memory::dims{ldc, 1});
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        auto& eng = ctx().engine;
        dnnl::matmul::primitive_desc pd({a, b, c}, attr, eng);
        return matmul_prims{dnnl::matmul(pd), memory(pd.scratchpad_desc(), eng),
                            a, b, c};
      });
}

} // namespace

void dnnl_sgemm_rowmajor(bool ta, bool tb, std::int64_t m, std::int64_t n,
                         std::int64_t k, const float* a, std::int64_t lda,
                         const float* b, std::int64_t ldb, float* c,
                         std::int64_t ldc) {
  auto& p = matmul_for(ta, tb, m, n, k, lda, ldb, ldc);
  auto& eng = ctx().engine;
  p.op.execute(ctx().stream,
               {{DNNL_ARG_SRC, memory(p.a, eng, const_cast<float*>(a))},
                {DNNL_ARG_WEIGHTS, memory(p.b, eng, const_cast<float*>(b))},
                {DNNL_ARG_DST, memory(p.c, eng, c)},
                {DNNL_ARG_SCRATCHPAD, p.scratchpad}});
}

void cpu_device::conv2d_forward(const window_geometry& g, const tensor& x,
                                const tensor& w, const tensor& b, tensor& y) {
  check_window(g, x, y);
  auto& p = conv_for(g);
  conv_descs d(g);
  const auto dst = wrap(d.dst, y);
  p.fwd.execute(ctx().stream,
                {{DNNL_ARG_SRC, p.fwd_src.in(wrap(d.src, x))},
                 {DNNL_ARG_WEIGHTS, p.fwd_weights.in(wrap(d.weights, w))},
                 {DNNL_ARG_BIAS, wrap(d.bias, b)},
                 {DNNL_ARG_DST, p.fwd_dst.target(dst)}});
  p.fwd_dst.out(dst);
}

void cpu_device::conv2d_backward(const window_geometry& g, const tensor& x,
                                 const tensor& w, const tensor& dy, tensor* dx,
                                 tensor& dw, tensor& db) {
  check_window(g, x, dy);
  auto& p = conv_for(g);
  conv_descs d(g);
  auto& s = ctx().stream;
  const auto diff_dst = wrap(d.dst, dy);
  const auto diff_w = wrap(d.weights, dw);
  p.bwd_weights.execute(
      s, {{DNNL_ARG_SRC, p.bw_src.in(wrap(d.src, x))},
          {DNNL_ARG_DIFF_DST, p.bw_diff_dst.in(diff_dst)},
          {DNNL_ARG_DIFF_WEIGHTS, p.bw_diff_weights.target(diff_w)},
          {DNNL_ARG_DIFF_BIAS, wrap(d.bias, db)}});
  p.bw_diff_weights.out(diff_w);
  if (dx == nullptr)
    return;
  const auto diff_src = wrap(d.src, *dx);
  p.bwd_data.execute(s,
                     {{DNNL_ARG_DIFF_DST, p.bd_diff_dst.in(diff_dst)},
                      {DNNL_ARG_WEIGHTS, p.bd_weights.in(wrap(d.weights, w))},
                      {DNNL_ARG_DIFF_SRC, p.bd_diff_src.target(diff_src)}});
  p.bd_diff_src.out(diff_src);
}

namespace {

// Max pooling on plain NCHW, here rather than in oneDNN: for that layout
// oneDNN 2.6 picks its reference kernel (simple_nchw), which took 13.7 ms
// for one 32x32x28x28 -> 14x14 window on this machine, half of a CNN's
// step. The workspace holds, per output, the index of its maximum within
// the input plane, as a float (exact below 2^24). Ties go to the first in
// row-major window order, as in oneDNN, so results are the same bits.
bool own_max_pool(const window_geometry& g) {
  return g.in_h * g.in_w < (std::int64_t{1} << 24);
}

void max_pool_forward(const window_geometry& g, const tensor& x, tensor& y,
                      tensor& workspace) {
  const auto planes = g.batch * g.channels;
  const auto in_plane = g.in_h * g.in_w;
  const auto out_plane = g.out_h * g.out_w;
  if (!workspace.defined() || workspace.numel() < planes * out_plane)
    workspace = tensor::empty({planes * out_plane});
  for (std::int64_t p = 0; p < planes; ++p) {
    const float* in = x.data() + p * in_plane;
    float* out = y.data() + p * out_plane;
    float* at = workspace.data() + p * out_plane;
    for (std::int64_t oy = 0; oy < g.out_h; ++oy) {
      const auto y0 = oy * g.stride - g.padding;
      const auto ky0 = std::max<std::int64_t>(0, -y0);
      const auto ky1 = std::min(g.kernel, g.in_h - y0);
      for (std::int64_t ox = 0; ox < g.out_w; ++ox) {
        const auto x0 = ox * g.stride - g.padding;
        const auto kx0 = std::max<std::int64_t>(0, -x0);
        const auto kx1 = std::min(g.kernel, g.in_w - x0);
        float best = std::numeric_limits<float>::lowest();
        std::int64_t where = (y0 + ky0) * g.in_w + x0 + kx0;
        for (auto ky = ky0; ky < ky1; ++ky) {
          const float* row = in + (y0 + ky) * g.in_w + x0;
          for (auto kx = kx0; kx < kx1; ++kx)
            if (row[kx] > best) {
              best = row[kx];
              where = (y0 + ky) * g.in_w + x0 + kx;
            }
        }
        out[oy * g.out_w + ox] = best;
        at[oy * g.out_w + ox] = static_cast<float>(where);
      }
    }
  }
}

void max_pool_backward(const window_geometry& g, const tensor& workspace,
                       const tensor& dy, tensor& dx) {
  const auto planes = g.batch * g.channels;
  const auto in_plane = g.in_h * g.in_w;
  const auto out_plane = g.out_h * g.out_w;
  std::fill(dx.data(), dx.data() + dx.numel(), 0.0f);
  for (std::int64_t p = 0; p < planes; ++p) {
    float* din = dx.data() + p * in_plane;
    const float* dout = dy.data() + p * out_plane;
    const float* at = workspace.data() + p * out_plane;
    for (std::int64_t o = 0; o < out_plane; ++o)
      din[static_cast<std::int64_t>(at[o])] += dout[o];
  }
}

} // namespace

void cpu_device::pool_forward(pool_kind k, const window_geometry& g,
                              const tensor& x, tensor& y, tensor& workspace) {
  check_window(g, x, y);
  if (k == pool_kind::max && own_max_pool(g)) {
    max_pool_forward(g, x, y, workspace);
    return;
  }
  auto& p = pool_for(k, g);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, wrap(p.fwd_pd.src_desc(), x)},
      {DNNL_ARG_DST, wrap(p.fwd_pd.dst_desc(), y)}};
  const auto ws = p.fwd_pd.workspace_desc();
  if (ws.get_size() > 0) {
    const auto floats = static_cast<std::int64_t>(
        (ws.get_size() + sizeof(float) - 1) / sizeof(float));
    if (!workspace.defined() || workspace.numel() < floats)
      workspace = tensor::empty({floats});
    args.emplace(DNNL_ARG_WORKSPACE, wrap(ws, workspace));
  }
  p.fwd.execute(ctx().stream, args);
}

void cpu_device::pool_backward(pool_kind k, const window_geometry& g,
                               const tensor& x, const tensor& y,
                               const tensor& workspace, const tensor& dy,
                               tensor& dx) {
  check_window(g, x, y);
  check_window(g, dx, dy);
  if (k == pool_kind::max && own_max_pool(g)) {
    TROUPE_CHECK(workspace.numel() >= dy.numel(),
                 "max pooling: no workspace from the forward pass");
    max_pool_backward(g, workspace, dy, dx);
    return;
  }
  auto& p = pool_for(k, g);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_DIFF_DST, wrap(p.fwd_pd.dst_desc(), dy)},
      {DNNL_ARG_DIFF_SRC, wrap(p.fwd_pd.src_desc(), dx)}};
  const auto ws = p.fwd_pd.workspace_desc();
  if (ws.get_size() > 0)
    args.emplace(DNNL_ARG_WORKSPACE, wrap(ws, workspace));
  p.bwd.execute(ctx().stream, args);
}

void cpu_device::batch_norm_forward(bool training, std::int64_t batch,
                                    std::int64_t channels, std::int64_t spatial,
                                    float eps, const tensor& x,
                                    const tensor& scale, const tensor& shift,
                                    tensor& mean, tensor& var, tensor& y) {
  TROUPE_CHECK(x.numel() == batch * channels * spatial &&
                   y.numel() == x.numel(),
               "batch_norm sizes differ");
  auto& p = bn_for(batch, channels, spatial, eps);
  (training ? p.train : p.infer)
      .execute(ctx().stream, {{DNNL_ARG_SRC, wrap(p.data, x)},
                              {DNNL_ARG_DST, wrap(p.data, y)},
                              {DNNL_ARG_SCALE, wrap(p.stats, scale)},
                              {DNNL_ARG_SHIFT, wrap(p.stats, shift)},
                              {DNNL_ARG_MEAN, wrap(p.stats, mean)},
                              {DNNL_ARG_VARIANCE, wrap(p.stats, var)}});
}

void cpu_device::batch_norm_backward(std::int64_t batch, std::int64_t channels,
                                     std::int64_t spatial, float eps,
                                     const tensor& x, const tensor& scale,
                                     const tensor& mean, const tensor& var,
                                     const tensor& dy, tensor* dx,
                                     tensor& dscale, tensor& dshift) {
  auto& p = bn_for(batch, channels, spatial, eps);
  // oneDNN always computes the input gradient; a first layer's goes to a
  // scratch buffer.
  tensor scratch;
  if (dx == nullptr)
    scratch = tensor::empty({x.numel()});
  p.bwd.execute(ctx().stream,
                {{DNNL_ARG_SRC, wrap(p.data, x)},
                 {DNNL_ARG_MEAN, wrap(p.stats, mean)},
                 {DNNL_ARG_VARIANCE, wrap(p.stats, var)},
                 {DNNL_ARG_DIFF_DST, wrap(p.data, dy)},
                 {DNNL_ARG_SCALE, wrap(p.stats, scale)},
                 // Demanded by oneDNN 2.6 with use_shift, never read.
                 {DNNL_ARG_SHIFT, wrap(p.stats, scale)},
                 {DNNL_ARG_DIFF_SRC, wrap(p.data, dx ? *dx : scratch)},
                 {DNNL_ARG_DIFF_SCALE, wrap(p.stats, dscale)},
                 {DNNL_ARG_DIFF_SHIFT, wrap(p.stats, dshift)}});
}

void cpu_device::layer_norm_forward(float eps, const tensor& x,
                                    const tensor& scale, const tensor& shift,
                                    tensor& mean, tensor& var, tensor& y) {
  TROUPE_CHECK(x.rank() == 2 && y.numel() == x.numel(),
               "layer_norm needs [rows, width]");
  auto& p = ln_for(x.dim(0), x.dim(1), eps);
  p.fwd.execute(ctx().stream, {{DNNL_ARG_SRC, wrap(p.data, x)},
                               {DNNL_ARG_DST, wrap(p.data, y)},
                               {DNNL_ARG_SCALE, wrap(p.scale, scale)},
                               {DNNL_ARG_SHIFT, wrap(p.scale, shift)},
                               {DNNL_ARG_MEAN, wrap(p.stats, mean)},
                               {DNNL_ARG_VARIANCE, wrap(p.stats, var)}});
}

void cpu_device::layer_norm_backward(float eps, const tensor& x,
                                     const tensor& scale, const tensor& mean,
                                     const tensor& var, const tensor& dy,
                                     tensor* dx, tensor& dscale,
                                     tensor& dshift) {
  TROUPE_CHECK(x.rank() == 2, "layer_norm needs [rows, width]");
  auto& p = ln_for(x.dim(0), x.dim(1), eps);
  tensor scratch;
  if (dx == nullptr)
    scratch = tensor::empty({x.numel()});
  p.bwd.execute(ctx().stream,
                {{DNNL_ARG_SRC, wrap(p.data, x)},
                 {DNNL_ARG_MEAN, wrap(p.stats, mean)},
                 {DNNL_ARG_VARIANCE, wrap(p.stats, var)},
                 {DNNL_ARG_DIFF_DST, wrap(p.data, dy)},
                 {DNNL_ARG_SCALE, wrap(p.scale, scale)},
                 {DNNL_ARG_SHIFT, wrap(p.scale, scale)}, // as above
                 {DNNL_ARG_DIFF_SRC, wrap(p.data, dx ? *dx : scratch)},
                 {DNNL_ARG_DIFF_SCALE, wrap(p.scale, dscale)},
                 {DNNL_ARG_DIFF_SHIFT, wrap(p.scale, dshift)}});
}

void cpu_device::dropout_forward(float rate, std::uint64_t key, const tensor& x,
                                 tensor& mask, tensor& y) {
  TROUPE_CHECK(mask.numel() == x.numel() && y.numel() == x.numel(),
               "dropout sizes differ");
  const float keep = 1.0f / (1.0f - rate);
  const auto n = x.numel();
  float* m = mask.data();
  const float* xs = x.data();
  float* ys = y.data();
  for (std::int64_t i = 0; i < n; ++i) {
    m[i] = unit_float(key, static_cast<std::uint64_t>(i)) < rate ? 0.0f : keep;
    ys[i] = xs[i] * m[i];
  }
}

void cpu_device::dropout_backward(const tensor& mask, const tensor& dy,
                                  tensor& dx) {
  TROUPE_CHECK(mask.numel() == dy.numel() && dx.numel() == dy.numel(),
               "dropout sizes differ");
  const auto n = dy.numel();
  const float* m = mask.data();
  const float* d = dy.data();
  float* o = dx.data();
  for (std::int64_t i = 0; i < n; ++i)
    o[i] = d[i] * m[i];
}

} // namespace troupe::devices::cpu_backend

// The op test harness for the CUDA backend: every op of the device
// interface runs on the CPU reference and on a GPU, on the same random
// inputs, and the results are compared by a bound of the op's own (max
// absolute difference over max(1, max |reference|)). Model gradients of the
// CUDA path are compared with the CPU's (which model.test.cpp checks against
// finite differences). Without a GPU every case reports skipped.
//
// To add an op: a case that builds inputs with random(), runs the op
// through both devices with on_gpu()/to_host(), and calls expect_close with
// a bound that says how far the two backends may differ for it.
#include "devices/backends.hpp"
#include "devices/check.hpp"
#include "devices/nn/model.hpp"
#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace dv = troupe::devices;
namespace nn = troupe::devices::nn;
using dv::tensor;

namespace {

boost::test_tools::assertion_result
gpu_present(boost::unit_test::test_unit_id) {
  std::string why;
  const bool found = !dv::cuda_devices(&why).empty();
  boost::test_tools::assertion_result r(found);
  if (!found)
    r.message() << "no GPU here (" << why << ")";
  return r;
}

struct gpu {
  std::unique_ptr<dv::device> dev = dv::make_cuda_device(0);
  dv::device& cpu = dv::cpu();

  tensor on_gpu(const tensor& host) {
    auto t = dev->alloc(host.shape());
    dev->upload(host, t);
    return t;
  }
  tensor to_host(const tensor& d) {
    auto t = tensor::empty(d.shape());
    dev->download(d, t);
    return t;
  }
};

tensor random(dv::shape_t shape, std::uint64_t seed, float scale = 1) {
  auto t = tensor::empty(std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] =
        scale * (2.0f * dv::unit_float(seed, std::uint64_t(i)) - 1.0f);
  return t;
}

void expect_close(const tensor& got, const tensor& want, double bound,
                  const std::string& what) {
  BOOST_REQUIRE_EQUAL(got.numel(), want.numel());
  double err = 0, norm = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    err = std::max(err, double(std::fabs(got.data()[i] - want.data()[i])));
    norm = std::max(norm, double(std::fabs(want.data()[i])));
  }
  const double rel = err / std::max(norm, 1.0);
  BOOST_TEST(rel <= bound, what << ": CUDA differs from CPU by " << rel
                                << " (bound " << bound << ")");
}

nn::layer_spec dense(std::int64_t units) {
  return {nn::layer_kind::dense, units};
}
nn::layer_spec act(nn::layer_kind k) {
  return {k, 0};
}

} // namespace

BOOST_AUTO_TEST_SUITE(cuda_ops, *boost::unit_test::precondition(gpu_present))

BOOST_FIXTURE_TEST_CASE(transfers_fill_and_copy_are_exact, gpu) {
  auto x = random({1000, 3}, 1);
  auto d = on_gpu(x);
  auto back = to_host(d);
  BOOST_TEST(back.to_vector() == x.to_vector());
  auto e = dev->alloc({3000});
  dev->copy(d, e);
  BOOST_TEST(to_host(e).to_vector() == x.to_vector());
  dev->fill(e, 2.5f);
  BOOST_TEST(to_host(e).to_vector() == std::vector<float>(3000, 2.5f));
  // Pinned host buffers are CPU tensors and round-trip as well.
  auto pinned = dev->host_alloc({3000});
  BOOST_TEST((pinned.kind() == dv::device_kind::cpu));
  dev->download(d, pinned);
  BOOST_TEST(pinned.to_vector() == x.to_vector());
}

BOOST_FIXTURE_TEST_CASE(gemm_every_transpose_and_shape, gpu) {
  const std::int64_t shapes[][3] = {{37, 53, 29}, {1, 7, 1}, {256, 784, 128}};
  for (const auto& s : shapes) {
    const auto m = s[0], k = s[1], n = s[2];
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        auto a = random(ta ? dv::shape_t{k, m} : dv::shape_t{m, k}, 2);
        auto b = random(tb ? dv::shape_t{n, k} : dv::shape_t{k, n}, 3);
        auto c = random({m, n}, 4);
        auto gc = on_gpu(c);
        cpu.gemm(ta, tb, 0.5f, a, b, 2.0f, c);
        dev->gemm(ta, tb, 0.5f, on_gpu(a), on_gpu(b), 2.0f, gc);
        expect_close(to_host(gc), c, 1e-5,
                     "gemm " + std::to_string(m) + "x" + std::to_string(k) +
                         "x" + std::to_string(n) + " ta=" + std::to_string(ta) +
                         " tb=" + std::to_string(tb));
      }
  }
}

BOOST_FIXTURE_TEST_CASE(gemm_on_a_column_block, gpu) {
  const std::int64_t rows = 33, width = 50, first = 7, count = 20, n = 9;
  auto a = random({rows, width}, 5);
  for (int ta = 0; ta < 2; ++ta) {
    const auto m = ta ? count : rows;
    const auto k = ta ? rows : count;
    auto b = random({k, n}, 6);
    auto c = random({m, n}, 7);
    auto gc = on_gpu(c);
    cpu.gemm_columns(ta, 2.0f, a, first, count, b, 0.5f, c);
    dev->gemm_columns(ta, 2.0f, on_gpu(a), first, count, on_gpu(b), 0.5f, gc);
    expect_close(to_host(gc), c, 1e-5, "gemm_columns ta=" + std::to_string(ta));
  }
}

BOOST_FIXTURE_TEST_CASE(elementwise_ops, gpu) {
  auto a = random({513, 7}, 8);
  auto b = random({513, 7}, 9);
  auto bias = random({7}, 10);
  auto out = tensor::empty({513, 7});
  auto ga = on_gpu(a), gb = on_gpu(b), gout = dev->alloc({513, 7});
  cpu.add(a, b, out);
  dev->add(ga, gb, gout);
  expect_close(to_host(gout), out, 0, "add");
  cpu.axpy(-0.75f, a, b);
  dev->axpy(-0.75f, ga, gb);
  expect_close(to_host(gb), b, 0, "axpy");
  cpu.scale(b, 3.0f);
  dev->scale(gb, 3.0f);
  expect_close(to_host(gb), b, 0, "scale");
  cpu.add_row_vector(b, bias);
  dev->add_row_vector(gb, on_gpu(bias));
  expect_close(to_host(gb), b, 0, "add_row_vector");
}

BOOST_FIXTURE_TEST_CASE(reductions, gpu) {
  auto x = random({300, 41}, 11);
  for (float beta : {0.0f, 1.0f, 0.5f}) {
    auto out = random({41}, 12);
    auto gout = on_gpu(out);
    cpu.sum_rows(x, beta, out);
    dev->sum_rows(on_gpu(x), beta, gout);
    // Each column is summed over the rows in the same order: same bits.
    expect_close(to_host(gout), out, 0,
                 "sum_rows beta=" + std::to_string(beta));
  }
  auto big = random({100003}, 13);
  const double want = cpu.sum(big);
  const double got = dev->sum(on_gpu(big));
  BOOST_TEST(std::fabs(got - want) <= 1e-9 * std::max(1.0, std::fabs(want)));
}

BOOST_FIXTURE_TEST_CASE(activations_forward_and_backward, gpu) {
  auto x = random({129, 33}, 14, 4.0f);
  auto dy = random({129, 33}, 15);
  const dv::activation fs[] = {dv::activation::relu, dv::activation::sigmoid,
                               dv::activation::tanh};
  const char* names[] = {"relu", "sigmoid", "tanh"};
  for (int i = 0; i < 3; ++i) {
    auto y = tensor::empty(x.shape());
    auto dx = tensor::empty(x.shape());
    auto gx = on_gpu(x), gy = dev->alloc(x.shape()),
         gdx = dev->alloc(x.shape());
    cpu.activation_forward(fs[i], x, y);
    dev->activation_forward(fs[i], gx, gy);
    expect_close(to_host(gy), y, 1e-6, std::string(names[i]) + " forward");
    cpu.activation_backward(fs[i], x, y, dy, dx);
    dev->activation_backward(fs[i], gx, gy, on_gpu(dy), gdx);
    expect_close(to_host(gdx), dx, 1e-6, std::string(names[i]) + " backward");
  }
}

BOOST_FIXTURE_TEST_CASE(softmax_forward_and_backward, gpu) {
  auto x = random({200, 10}, 16, 6.0f);
  auto dy = random({200, 10}, 17);
  auto y = tensor::empty(x.shape()), dx = tensor::empty(x.shape());
  auto gy = dev->alloc(x.shape()), gdx = dev->alloc(x.shape());
  cpu.softmax(x, y);
  dev->softmax(on_gpu(x), gy);
  expect_close(to_host(gy), y, 1e-6, "softmax");
  cpu.softmax_backward(y, dy, dx);
  dev->softmax_backward(gy, on_gpu(dy), gdx);
  expect_close(to_host(gdx), dx, 1e-6, "softmax_backward");
}

BOOST_FIXTURE_TEST_CASE(losses_values_accuracy_and_gradients, gpu) {
  const std::int64_t rows = 517, k = 10;
  auto z = random({rows, k}, 18, 5.0f);
  auto labels = tensor::empty({rows});
  for (std::int64_t i = 0; i < rows; ++i)
    labels.data()[i] = static_cast<float>(dv::random_bits(19, i) % k);
  auto d = tensor::empty(z.shape());
  auto gd = dev->alloc(z.shape());
  auto want = cpu.loss(dv::loss_kind::cross_entropy, 1, z, labels, 0.25f, &d);
  auto got = dev->loss(dv::loss_kind::cross_entropy, 1, on_gpu(z),
                       on_gpu(labels), 0.25f, &gd);
  BOOST_TEST(got.loss == want.loss, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(got.correct == want.correct);
  expect_close(to_host(gd), d, 1e-6, "cross_entropy gradient");
  // Without a gradient buffer: loss and accuracy only.
  auto plain = dev->loss(dv::loss_kind::cross_entropy, 1, on_gpu(z),
                         on_gpu(labels), 1, nullptr);
  BOOST_TEST(plain.correct == want.correct);

  auto p = random({rows, 3}, 20, 2.0f);
  auto t = random({rows, 3}, 21, 2.0f);
  for (auto kind : {dv::loss_kind::mse, dv::loss_kind::huber}) {
    auto dr = tensor::empty(p.shape());
    auto gdr = dev->alloc(p.shape());
    auto w = cpu.loss(kind, 0.7f, p, t, 0.5f, &dr);
    auto g = dev->loss(kind, 0.7f, on_gpu(p), on_gpu(t), 0.5f, &gdr);
    BOOST_TEST(g.loss == w.loss, boost::test_tools::tolerance(1e-9));
    expect_close(to_host(gdr), dr, 0,
                 kind == dv::loss_kind::mse ? "mse gradient"
                                            : "huber gradient");
  }
}

BOOST_FIXTURE_TEST_CASE(optimizer_steps, gpu) {
  const std::int64_t n = 10007;
  const dv::optimizer_kind kinds[] = {
      dv::optimizer_kind::sgd, dv::optimizer_kind::momentum,
      dv::optimizer_kind::nesterov, dv::optimizer_kind::adam,
      dv::optimizer_kind::adamw};
  for (auto kind : kinds) {
    dv::optimizer_config cfg;
    cfg.kind = kind;
    cfg.lr = 0.01f;
    cfg.weight_decay = 1e-4f;
    auto p = random({n}, 22);
    auto gp = on_gpu(p);
    std::vector<tensor> state, gstate;
    for (int s = 0; s < dv::optimizer_state_count(kind); ++s) {
      state.push_back(tensor::zeros({n}));
      gstate.push_back(on_gpu(state.back()));
    }
    for (std::int64_t step = 1; step <= 3; ++step) {
      auto g = random({n}, 23 + static_cast<std::uint64_t>(step));
      cpu.optimizer_step(cfg, step, p, g, state.data(), p);
      dev->optimizer_step(cfg, step, gp, on_gpu(g), gstate.data(), gp);
    }
    expect_close(to_host(gp), p, 1e-6,
                 "optimizer " + std::to_string(static_cast<int>(kind)));
  }
}

BOOST_FIXTURE_TEST_CASE(model_gradients_match_the_cpu_and_repeat, gpu) {
  // The Fashion-MNIST MLP, with its first layer's weights in row blocks as
  // a partitioned job uses them.
  const std::vector<nn::layer_spec> layers{
      dense(128), act(nn::layer_kind::relu), dense(10)};
  const nn::loss_spec loss{dv::loss_kind::cross_entropy, 1};
  nn::model host(cpu, 784, layers, loss);
  nn::model device(*dev, 784, layers, loss);
  auto params = tensor::empty({host.param_count()});
  nn::init_params(host.layout(), 3, 0, host.param_count(), params.data());
  auto x = random({64, 784}, 30);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data()[i] = 0.5f * (x.data()[i] + 1.0f); // pixels in [0, 1)
  auto y = tensor::empty({64});
  for (std::int64_t i = 0; i < 64; ++i)
    y.data()[i] = static_cast<float>(dv::random_bits(31, i) % 10);
  auto grad = tensor::empty({host.param_count()});
  const auto want = host.train_step(params, x, y, 1.0f / 64, grad);
  auto gparams = on_gpu(params), gx = on_gpu(x), gy = on_gpu(y);
  auto ggrad = dev->alloc({host.param_count()});
  const auto got = device.train_step(gparams, gx, gy, 1.0f / 64, ggrad);
  BOOST_TEST(got.loss == want.loss, boost::test_tools::tolerance(1e-5));
  BOOST_TEST(got.correct == want.correct);
  auto first = to_host(ggrad);
  expect_close(first, grad, 1e-5, "model gradient");
  // The same GPU, the same inputs: the same bits.
  device.train_step(gparams, gx, gy, 1.0f / 64, ggrad);
  BOOST_TEST(to_host(ggrad).to_vector() == first.to_vector());
  const auto eval = device.evaluate(gparams, gx, gy);
  BOOST_TEST(eval.loss == want.loss, boost::test_tools::tolerance(1e-5));
}

BOOST_FIXTURE_TEST_CASE(convolution_forward_and_backward, gpu) {
  // Stride 2 and padding 1 over 3 channels: cuDNN against oneDNN.
  dv::window_geometry g;
  g.batch = 4;
  g.channels = 3;
  g.in_h = g.in_w = 9;
  g.out_channels = 5;
  g.kernel = 3;
  g.stride = 2;
  g.padding = 1;
  g.out_h = g.out_w = 5;
  auto x = random({4, 3 * 81}, 40), w = random({5, 27}, 41),
       b = random({5}, 42), dy = random({4, 5 * 25}, 43);
  auto y = tensor::empty({4, 125}), dx = tensor::empty({4, 243}),
       dw = tensor::empty({5, 27}), db = tensor::empty({5});
  cpu.conv2d_forward(g, x, w, b, y);
  cpu.conv2d_backward(g, x, w, dy, &dx, dw, db);
  auto gx = on_gpu(x), gw = on_gpu(w), gb = on_gpu(b), gdy = on_gpu(dy);
  auto gy = dev->alloc(y.shape()), gdx = dev->alloc(dx.shape()),
       gdw = dev->alloc(dw.shape()), gdb = dev->alloc(db.shape());
  dev->conv2d_forward(g, gx, gw, gb, gy);
  dev->conv2d_backward(g, gx, gw, gdy, &gdx, gdw, gdb);
  expect_close(to_host(gy), y, 1e-5, "conv2d forward");
  expect_close(to_host(gdx), dx, 1e-5, "conv2d input gradient");
  expect_close(to_host(gdw), dw, 1e-5, "conv2d weight gradient");
  expect_close(to_host(gdb), db, 1e-5, "conv2d bias gradient");
}

BOOST_FIXTURE_TEST_CASE(pooling_forward_and_backward, gpu) {
  for (auto k : {dv::pool_kind::max, dv::pool_kind::avg}) {
    dv::window_geometry g;
    g.batch = 3;
    g.channels = g.out_channels = 4;
    g.in_h = g.in_w = 7;
    g.kernel = 3;
    g.stride = 2;
    g.padding = 1;
    g.out_h = g.out_w = 4;
    auto x = random({3, 4 * 49}, 50), dy = random({3, 4 * 16}, 51);
    auto y = tensor::empty({3, 64}), dx = tensor::empty({3, 196});
    tensor workspace;
    cpu.pool_forward(k, g, x, y, workspace);
    cpu.pool_backward(k, g, x, y, workspace, dy, dx);
    auto gx = on_gpu(x), gdy = on_gpu(dy);
    auto gy = dev->alloc(y.shape()), gdx = dev->alloc(dx.shape());
    tensor none;
    dev->pool_forward(k, g, gx, gy, none);
    dev->pool_backward(k, g, gx, gy, none, gdy, gdx);
    const std::string what = k == dv::pool_kind::max ? "max" : "avg";
    // Max pooling picks the same element: exact; the mean 1e-6.
    expect_close(to_host(gy), y, k == dv::pool_kind::max ? 0 : 1e-6,
                 what + " pool forward");
    expect_close(to_host(gdx), dx, k == dv::pool_kind::max ? 0 : 1e-6,
                 what + " pool backward");
  }
}

BOOST_FIXTURE_TEST_CASE(normalization_forward_and_backward, gpu) {
  // Batch norm over [6, 4, 10] in training and inference; layer norm over
  // rows of 40.
  auto x = random({6, 40}, 60, 3.0f), dy = random({6, 40}, 61);
  auto scale = random({4}, 62), shift = random({4}, 63);
  auto mean = tensor::empty({4}), var = tensor::empty({4});
  auto y = tensor::empty({6, 40}), dx = tensor::empty({6, 40});
  auto dscale = tensor::empty({4}), dshift = tensor::empty({4});
  cpu.batch_norm_forward(true, 6, 4, 10, 1e-5f, x, scale, shift, mean, var, y);
  cpu.batch_norm_backward(6, 4, 10, 1e-5f, x, scale, mean, var, dy, &dx, dscale,
                          dshift);
  auto gx = on_gpu(x), gdy = on_gpu(dy), gscale = on_gpu(scale),
       gshift = on_gpu(shift);
  auto gmean = dev->alloc({4}), gvar = dev->alloc({4}),
       gy = dev->alloc(y.shape()), gdx = dev->alloc(dx.shape()),
       gdscale = dev->alloc({4}), gdshift = dev->alloc({4});
  dev->batch_norm_forward(true, 6, 4, 10, 1e-5f, gx, gscale, gshift, gmean,
                          gvar, gy);
  dev->batch_norm_backward(6, 4, 10, 1e-5f, gx, gscale, gmean, gvar, gdy, &gdx,
                           gdscale, gdshift);
  expect_close(to_host(gmean), mean, 1e-6, "batch_norm mean");
  expect_close(to_host(gvar), var, 1e-6, "batch_norm variance");
  expect_close(to_host(gy), y, 1e-5, "batch_norm forward");
  expect_close(to_host(gdx), dx, 1e-5, "batch_norm input gradient");
  expect_close(to_host(gdscale), dscale, 1e-5, "batch_norm scale gradient");
  expect_close(to_host(gdshift), dshift, 1e-5, "batch_norm shift gradient");
  cpu.batch_norm_forward(false, 6, 4, 10, 1e-5f, x, scale, shift, mean, var, y);
  dev->batch_norm_forward(false, 6, 4, 10, 1e-5f, gx, gscale, gshift, gmean,
                          gvar, gy);
  expect_close(to_host(gy), y, 1e-5, "batch_norm inference");

  auto lscale = random({40}, 64), lshift = random({40}, 65);
  auto lmean = tensor::empty({6}), lvar = tensor::empty({6});
  auto ldscale = tensor::empty({40}), ldshift = tensor::empty({40});
  cpu.layer_norm_forward(1e-5f, x, lscale, lshift, lmean, lvar, y);
  cpu.layer_norm_backward(1e-5f, x, lscale, lmean, lvar, dy, &dx, ldscale,
                          ldshift);
  auto glscale = on_gpu(lscale), glshift = on_gpu(lshift);
  auto glmean = dev->alloc({6}), glvar = dev->alloc({6}),
       gldscale = dev->alloc({40}), gldshift = dev->alloc({40});
  dev->layer_norm_forward(1e-5f, gx, glscale, glshift, glmean, glvar, gy);
  dev->layer_norm_backward(1e-5f, gx, glscale, glmean, glvar, gdy, &gdx,
                           gldscale, gldshift);
  expect_close(to_host(gy), y, 1e-5, "layer_norm forward");
  expect_close(to_host(gdx), dx, 1e-5, "layer_norm input gradient");
  expect_close(to_host(gldscale), ldscale, 1e-5, "layer_norm scale gradient");
  expect_close(to_host(gldshift), ldshift, 1e-5, "layer_norm shift gradient");
}

BOOST_FIXTURE_TEST_CASE(dropout_draws_the_cpus_mask, gpu) {
  auto x = random({5, 999}, 70), dy = random({5, 999}, 71);
  auto mask = tensor::empty(x.shape()), y = tensor::empty(x.shape()),
       dx = tensor::empty(x.shape());
  const auto key = nn::noise_key(42, 1, 9, 3);
  cpu.dropout_forward(0.3f, key, x, mask, y);
  cpu.dropout_backward(mask, dy, dx);
  auto gx = on_gpu(x), gdy = on_gpu(dy);
  auto gmask = dev->alloc(x.shape()), gy = dev->alloc(x.shape()),
       gdx = dev->alloc(x.shape());
  dev->dropout_forward(0.3f, key, gx, gmask, gy);
  dev->dropout_backward(gmask, gdy, gdx);
  // The same counter-based draws: the same mask, bit for bit.
  BOOST_TEST(to_host(gmask).to_vector() == mask.to_vector());
  expect_close(to_host(gy), y, 0, "dropout forward");
  expect_close(to_host(gdx), dx, 0, "dropout backward");
}

BOOST_FIXTURE_TEST_CASE(cnn_gradients_match_the_cpu_and_repeat, gpu) {
  // The example CNN's layers plus batch_norm, layer_norm and dropout, on
  // Fashion-MNIST-sized inputs.
  auto conv = [](std::int64_t c, std::int64_t k, std::int64_t pad) {
    nn::layer_spec l{nn::layer_kind::conv2d, c};
    l.kernel = k;
    l.padding = pad;
    return l;
  };
  nn::layer_spec pool{nn::layer_kind::max_pool2d, 0};
  pool.kernel = pool.stride = 2;
  nn::layer_spec drop{nn::layer_kind::dropout, 0};
  drop.rate = 0.25f;
  const std::vector<nn::layer_spec> layers{conv(8, 3, 1),
                                           {nn::layer_kind::batch_norm, 0},
                                           act(nn::layer_kind::relu),
                                           pool,
                                           conv(16, 3, 1),
                                           act(nn::layer_kind::relu),
                                           pool,
                                           {nn::layer_kind::flatten, 0},
                                           {nn::layer_kind::layer_norm, 0},
                                           drop,
                                           dense(32),
                                           act(nn::layer_kind::relu),
                                           dense(10)};
  const nn::loss_spec loss{dv::loss_kind::cross_entropy, 1};
  const dv::shape_t image{1, 28, 28};
  nn::model host(cpu, image, layers, loss);
  nn::model device(*dev, image, layers, loss);
  const nn::step_context ctx{nn::noise_key(1, 0, 5, 0), 0.5f};
  host.set_context(ctx);
  device.set_context(ctx);
  auto params = tensor::empty({host.param_count()});
  nn::init_params(host.layout(), 3, 0, host.param_count(), params.data());
  auto x = random({16, 784}, 80);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data()[i] = 0.5f * (x.data()[i] + 1.0f);
  auto y = tensor::empty({16});
  for (std::int64_t i = 0; i < 16; ++i)
    y.data()[i] = static_cast<float>(dv::random_bits(81, i) % 10);
  auto grad = tensor::empty({host.param_count()});
  const auto want = host.train_step(params, x, y, 1.0f / 16, grad);
  auto gparams = on_gpu(params), gx = on_gpu(x), gy = on_gpu(y);
  auto ggrad = dev->alloc({host.param_count()});
  const auto got = device.train_step(gparams, gx, gy, 1.0f / 16, ggrad);
  BOOST_TEST(got.loss == want.loss, boost::test_tools::tolerance(1e-4));
  auto first = to_host(ggrad);
  expect_close(first, grad, 1e-4, "CNN gradient");
  device.train_step(gparams, gx, gy, 1.0f / 16, ggrad);
  BOOST_TEST(to_host(ggrad).to_vector() == first.to_vector());
  const auto eval_cpu = host.evaluate(params, x, y);
  const auto eval_gpu = device.evaluate(gparams, gx, gy);
  BOOST_TEST(eval_gpu.loss == eval_cpu.loss,
             boost::test_tools::tolerance(1e-4));
}

BOOST_AUTO_TEST_SUITE_END()

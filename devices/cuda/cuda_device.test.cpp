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
      dv::optimizer_kind::nesterov, dv::optimizer_kind::adam};
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

BOOST_AUTO_TEST_SUITE_END()

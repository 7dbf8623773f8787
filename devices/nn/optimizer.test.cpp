// Optimizer steps against values computed by hand from PyTorch's update rules.
#include "devices/device.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

namespace dv = troupe::devices;
using dv::tensor;
namespace tt = boost::test_tools;

namespace {

struct run {
  tensor p = tensor::from({2}, std::vector<float>{1.0f, -2.0f});
  tensor state[2] = {tensor::zeros({2}), tensor::zeros({2})};
  void step(const dv::optimizer_config& cfg, int t, std::vector<float> g) {
    auto grad = tensor::from({2}, g);
    dv::cpu().optimizer_step(cfg, t, p, grad, state, p);
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(optimizers)

BOOST_AUTO_TEST_CASE(sgd) {
  dv::optimizer_config cfg;
  cfg.kind = dv::optimizer_kind::sgd;
  cfg.lr = 0.1f;
  run r;
  r.step(cfg, 1, {0.5f, -1.0f});
  BOOST_TEST(r.p.data()[0] == 0.95f, tt::tolerance(1e-6f));
  BOOST_TEST(r.p.data()[1] == -1.9f, tt::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(sgd_weight_decay) {
  dv::optimizer_config cfg;
  cfg.kind = dv::optimizer_kind::sgd;
  cfg.lr = 0.1f;
  cfg.weight_decay = 0.5f;
  run r;
  r.step(cfg, 1, {0.0f, 0.0f});
  BOOST_TEST(r.p.data()[0] == 0.95f, tt::tolerance(1e-6f)); // 1 - 0.1*0.5*1
}

BOOST_AUTO_TEST_CASE(momentum_two_steps) {
  dv::optimizer_config cfg;
  cfg.kind = dv::optimizer_kind::momentum;
  cfg.lr = 0.1f;
  cfg.momentum = 0.9f;
  run r;
  r.step(cfg, 1, {1.0f, 0.0f}); // buf = 1, p = 1 - 0.1
  BOOST_TEST(r.p.data()[0] == 0.9f, tt::tolerance(1e-6f));
  r.step(cfg, 2, {1.0f, 0.0f}); // buf = 0.9 + 1 = 1.9, p = 0.9 - 0.19
  BOOST_TEST(r.state[0].data()[0] == 1.9f, tt::tolerance(1e-6f));
  BOOST_TEST(r.p.data()[0] == 0.71f, tt::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(nesterov_two_steps) {
  dv::optimizer_config cfg;
  cfg.kind = dv::optimizer_kind::nesterov;
  cfg.lr = 0.1f;
  cfg.momentum = 0.9f;
  run r;
  r.step(cfg, 1, {1.0f, 0.0f}); // buf = 1, dir = 1 + 0.9 = 1.9, p = 0.81
  BOOST_TEST(r.p.data()[0] == 0.81f, tt::tolerance(1e-6f));
  r.step(cfg, 2, {1.0f, 0.0f}); // buf = 1.9, dir = 1 + 1.71 = 2.71, p = 0.539
  BOOST_TEST(r.p.data()[0] == 0.539f, tt::tolerance(1e-5f));
}

BOOST_AUTO_TEST_CASE(adam_two_steps) {
  dv::optimizer_config cfg;
  cfg.kind = dv::optimizer_kind::adam;
  cfg.lr = 0.01f;
  run r;
  // Step 1: m = 0.1 g, v = 0.001 g^2, bias-corrected m/sqrt(v) = sign(g), so
  // p moves by lr (up to eps).
  r.step(cfg, 1, {2.0f, -0.5f});
  BOOST_TEST(r.p.data()[0] == 0.99f, tt::tolerance(1e-5f));
  BOOST_TEST(r.p.data()[1] == -1.99f, tt::tolerance(1e-5f));
  BOOST_TEST(r.state[0].data()[0] == 0.2f, tt::tolerance(1e-6f));
  BOOST_TEST(r.state[1].data()[0] == 0.004f,
             tt::tolerance(1e-4f)); // 1 - 0.999f is inexact
  // Step 2 with g = 1: m = 0.18 + 0.1 = 0.28, v = 0.003996 + 0.001 = 0.004996
  // m_hat = 0.28 / 0.19, v_hat = 0.004996 / (1 - 0.999^2)
  r.step(cfg, 2, {1.0f, 0.0f});
  const double m_hat = 0.28 / 0.19;
  const double v_hat = 0.004996 / (1.0 - 0.999 * 0.999);
  const double want = 0.99 - 0.01 * m_hat / (std::sqrt(v_hat) + 1e-8);
  BOOST_TEST(r.p.data()[0] == want, tt::tolerance(1e-5));
}

BOOST_AUTO_TEST_CASE(adamw_decays_the_weights_apart_from_the_gradient) {
  // torch.optim.AdamW: p *= 1 - lr * wd, then the Adam step on the plain
  // gradient. With g = 0 at step 1, m = v = 0: only the decay moves p.
  dv::optimizer_config cfg;
  cfg.kind = dv::optimizer_kind::adamw;
  cfg.lr = 0.1f;
  cfg.weight_decay = 0.5f;
  run r;
  r.step(cfg, 1, {0.0f, 0.0f});
  BOOST_TEST(r.p.data()[0] == 0.95f, tt::tolerance(1e-6f)); // 1 * (1 - 0.05)
  BOOST_TEST(r.p.data()[1] == -1.90f, tt::tolerance(1e-6f));
  BOOST_TEST(r.state[0].data()[0] == 0.0f); // the decay is not in m
  // Step 2, g = 2: m = 0.2, v = 0.004; m_hat / sqrt(v_hat) is about 1 (up
  // to bias corrections), so p = 0.95 * 0.95 - 0.1 * that.
  r.step(cfg, 2, {2.0f, 0.0f});
  const double m_hat = 0.2 / (1 - 0.81);
  const double v_hat = 0.004 / (1 - 0.999 * 0.999);
  const double want = 0.95 * 0.95 - 0.1 * m_hat / (std::sqrt(v_hat) + 1e-8);
  BOOST_TEST(r.p.data()[0] == want, tt::tolerance(1e-4));
  // Adam with the same weight_decay puts it into the gradient instead.
  dv::optimizer_config adam = cfg;
  adam.kind = dv::optimizer_kind::adam;
  run a;
  a.step(adam, 1, {0.0f, 0.0f});
  BOOST_TEST(a.state[0].data()[0] != 0.0f);
}

BOOST_AUTO_TEST_CASE(out_of_place_leaves_input_alone) {
  dv::optimizer_config cfg;
  cfg.kind = dv::optimizer_kind::sgd;
  cfg.lr = 1.0f;
  auto p = tensor::from({1}, std::vector<float>{3});
  auto g = tensor::from({1}, std::vector<float>{1});
  auto out = tensor::empty({1});
  dv::cpu().optimizer_step(cfg, 1, p, g, nullptr, out);
  BOOST_TEST(p.data()[0] == 3.0f);
  BOOST_TEST(out.data()[0] == 2.0f);
}

BOOST_AUTO_TEST_SUITE_END()

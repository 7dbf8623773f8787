// Every layer and loss: analytic gradients against central finite
// differences of the loss, computed in float on small models.
#include "devices/nn/model.hpp"
#include "devices/nn/gradient_check.test.hpp"

#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace dv = troupe::devices;
namespace nn = troupe::devices::nn;
using dv::tensor;

namespace {

tensor random_tensor(dv::shape_t shape, std::uint64_t seed, float scale = 1) {
  auto t = tensor::empty(std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] =
        scale * (2.0f * dv::unit_float(seed, std::uint64_t(i)) - 1.0f);
  return t;
}

// Checks d(loss)/d(params) of the model against finite differences.
void check_gradients(std::vector<nn::layer_spec> layers, nn::loss_spec loss) {
  const std::int64_t inputs = 4, batch = 3;
  nn::model m(dv::cpu(), inputs, layers, loss);
  auto params = tensor::empty({m.param_count()});
  nn::init_params(m.layout(), 7, 0, m.param_count(), params.data());
  auto x = random_tensor({batch, inputs}, 11);
  tensor target;
  if (loss.kind == dv::loss_kind::cross_entropy) {
    target = tensor::from({batch}, std::vector<float>{0, 2, 1});
  } else {
    target = random_tensor({batch, m.outputs()}, 13, 1.5f);
  }
  BOOST_TEST(nn::testing::worst_gradient_error(m, params, x, target) < 2e-3);
}

nn::layer_spec dense(std::int64_t units) {
  return {nn::layer_kind::dense, units};
}
nn::layer_spec act(nn::layer_kind k) {
  return {k, 0};
}

} // namespace

BOOST_AUTO_TEST_SUITE(gradients)

BOOST_AUTO_TEST_CASE(dense_cross_entropy) {
  check_gradients({dense(3)}, {dv::loss_kind::cross_entropy, 1});
}
BOOST_AUTO_TEST_CASE(relu) {
  check_gradients({dense(5), act(nn::layer_kind::relu), dense(3)},
                  {dv::loss_kind::cross_entropy, 1});
}
BOOST_AUTO_TEST_CASE(sigmoid) {
  check_gradients({dense(5), act(nn::layer_kind::sigmoid), dense(3)},
                  {dv::loss_kind::cross_entropy, 1});
}
BOOST_AUTO_TEST_CASE(tanh_layer) {
  check_gradients({dense(5), act(nn::layer_kind::tanh), dense(3)},
                  {dv::loss_kind::mse, 1});
}
BOOST_AUTO_TEST_CASE(softmax_layer) {
  check_gradients({dense(5), act(nn::layer_kind::softmax), dense(2)},
                  {dv::loss_kind::mse, 1});
}
BOOST_AUTO_TEST_CASE(mse_loss) {
  check_gradients({dense(4), act(nn::layer_kind::tanh), dense(2)},
                  {dv::loss_kind::mse, 1});
}
BOOST_AUTO_TEST_CASE(huber_loss_both_regions) {
  // delta 0.3 puts some residuals in the quadratic and some in the linear part.
  check_gradients({dense(4), act(nn::layer_kind::sigmoid), dense(2)},
                  {dv::loss_kind::huber, 0.3f});
}

BOOST_AUTO_TEST_CASE(layout_and_init_are_split_invariant) {
  std::vector<nn::layer_spec> layers{dense(128), act(nn::layer_kind::relu),
                                     dense(10)};
  auto layout = nn::param_layout(784, layers);
  BOOST_TEST(nn::param_count(layout) == 784 * 128 + 128 + 128 * 10 + 10);
  BOOST_TEST(layout[2].offset == 784 * 128 + 128);
  const auto n = nn::param_count(layout);
  std::vector<float> whole(static_cast<std::size_t>(n));
  nn::init_params(layout, 42, 0, n, whole.data());
  std::vector<float> pieces(static_cast<std::size_t>(n));
  const std::int64_t cut[] = {0, 1000, 50000, 100480, n};
  for (int i = 0; i < 4; ++i)
    nn::init_params(layout, 42, cut[i], cut[i + 1] - cut[i],
                    pieces.data() + cut[i]);
  BOOST_TEST(whole == pieces);
  const float bound = 1.0f / std::sqrt(784.0f);
  for (std::int64_t i = 0; i < 784 * 128; ++i)
    BOOST_REQUIRE(std::fabs(whole[std::size_t(i)]) <= bound);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(streaming)

// 1200 x 128 weights are used in several row blocks.
constexpr int in = 1200;
struct wide_model {
  nn::model m{dv::cpu(),
              in,
              {dense(128), act(nn::layer_kind::relu), dense(10)},
              {dv::loss_kind::cross_entropy, 1}};
  tensor params = tensor::empty({m.param_count()});
  tensor x = random_tensor({16, in}, 3);
  tensor y = tensor::from({16}, std::vector<float>(16, 4.0f));
  wide_model() {
    nn::init_params(m.layout(), 5, 0, m.param_count(), params.data());
  }
};

BOOST_FIXTURE_TEST_CASE(forward_is_the_same_in_any_arrival_order, wide_model) {
  const auto whole = m.forward(params, x).clone().to_vector();
  // The parameters arrive in pieces of 5,000 elements, last piece first.
  const auto n = m.param_count();
  std::vector<std::pair<std::int64_t, std::int64_t>> pieces;
  for (std::int64_t b = 0; b < n; b += 5000)
    pieces.emplace_back(b, std::min(n, b + 5000));
  std::reverse(pieces.begin(), pieces.end());
  nn::range_set have;
  m.begin_forward(x);
  std::size_t arrived = 0;
  for (auto [b, e] : pieces) {
    BOOST_TEST(!m.forward_ready(params, have));
    have.add(b, e);
    ++arrived;
    BOOST_TEST(m.forward_ready(params, have) == (arrived == pieces.size()));
  }
  // The pass that took the pieces as they came has the output of the
  // pass that had them all (relu: training and inference agree), bit for
  // bit, and so the same loss and gradient.
  BOOST_TEST(m.output().to_vector() == whole);
  auto streamed = tensor::empty({m.param_count()});
  auto reference = tensor::empty({m.param_count()});
  const auto streamed_loss = m.backward(params, y, 0.5f, streamed).loss;
  const auto reference_loss = m.train_step(params, x, y, 0.5f, reference).loss;
  BOOST_TEST(streamed_loss > 0);
  BOOST_TEST(streamed_loss == reference_loss);
  BOOST_TEST(streamed.to_vector() == reference.to_vector());
}

BOOST_FIXTURE_TEST_CASE(blocked_products_match_a_double_reference, wide_model) {
  auto grad = tensor::empty({m.param_count()});
  m.train_step(params, x, y, 1.0f, grad);
  // dW of the first layer is x^T * dy1; recompute it with one sgemm from
  // dy1 = (dlogits * W2^T) masked by relu, in double, and compare.
  const auto& out = m.forward(params, x).to_vector();
  const auto& lay = m.layout();
  std::vector<double> h(16 * 128), dlog(16 * 10), dh(16 * 128);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 128; ++j) {
      double s = params.data()[lay[1].offset + j];
      for (int k = 0; k < in; ++k)
        s += double(x.data()[i * in + k]) * params.data()[k * 128 + j];
      h[i * 128 + j] = s;
    }
  for (int i = 0; i < 16; ++i) {
    double mx = -1e30, z = 0;
    for (int c = 0; c < 10; ++c)
      mx = std::max(mx, double(out[std::size_t(i * 10 + c)]));
    for (int c = 0; c < 10; ++c)
      z += std::exp(out[std::size_t(i * 10 + c)] - mx);
    for (int c = 0; c < 10; ++c)
      dlog[i * 10 + c] =
          std::exp(out[std::size_t(i * 10 + c)] - mx) / z - (c == 4 ? 1 : 0);
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 128; ++j) {
      double s = 0;
      for (int c = 0; c < 10; ++c)
        s += dlog[i * 10 + c] * params.data()[lay[2].offset + j * 10 + c];
      dh[i * 128 + j] = h[i * 128 + j] > 0 ? s : 0;
    }
  double worst = 0;
  for (int k = 0; k < in; ++k)
    for (int j = 0; j < 128; ++j) {
      double s = 0;
      for (int i = 0; i < 16; ++i)
        s += double(x.data()[i * in + k]) * dh[i * 128 + j];
      worst = std::max(worst, std::fabs(s - grad.data()[k * 128 + j]) /
                                  std::max(1.0, std::fabs(s)));
    }
  BOOST_TEST(worst < 1e-4);
}

BOOST_FIXTURE_TEST_CASE(backward_reports_every_range_once_urgent_first,
                        wide_model) {
  auto grad = tensor::empty({m.param_count()});
  nn::range_set every;
  every.add(0, m.param_count());
  m.begin_forward(x);
  BOOST_TEST(m.forward_ready(params, every));
  // Urgent: every row block of the first layer past its first quarter.
  const std::int64_t half = (in / 4) * 128;
  std::vector<std::pair<std::int64_t, std::int64_t>> seen;
  nn::grad_hooks hooks;
  hooks.ready = [&](std::int64_t b, std::int64_t e) {
    seen.emplace_back(b, e);
  };
  hooks.urgent = [&](std::int64_t b, std::int64_t e) {
    return e > half && b < in * 128;
  };
  m.backward(params, y, 1.0f, grad, hooks);
  nn::range_set all;
  std::int64_t total = 0;
  for (auto [b, e] : seen) {
    BOOST_TEST(!all.intersects(b, e));
    all.add(b, e);
    total += e - b;
  }
  BOOST_TEST(total == m.param_count());
  BOOST_TEST(all.covers(0, m.param_count()));
  // The first layer's row blocks: every urgent one before any other.
  std::vector<bool> urgency;
  std::int64_t last_block = -1;
  for (auto [b, e] : seen)
    if (b < in * 128) {
      urgency.push_back(hooks.urgent(b, e));
      last_block = b;
    }
  BOOST_TEST(last_block == 0); // row 0 is not urgent: it comes last
  BOOST_REQUIRE(urgency.size() > 2u);
  BOOST_TEST(urgency.front());
  BOOST_TEST(!urgency.back());
  BOOST_TEST(std::is_partitioned(urgency.begin(), urgency.end(),
                                 [](bool u) { return u; }));
}

BOOST_AUTO_TEST_CASE(range_set_merges_and_counts) {
  nn::range_set r;
  r.add(10, 20);
  r.add(30, 40);
  BOOST_TEST(r.count() == 20);
  BOOST_TEST(!r.covers(15, 35));
  BOOST_TEST(r.intersects(19, 30));
  BOOST_TEST(!r.intersects(20, 30));
  r.add(20, 30);
  BOOST_TEST(r.covers(10, 40));
  BOOST_TEST(r.count() == 30);
  r.add(5, 45);
  BOOST_TEST(r.count() == 40);
  BOOST_TEST(!r.covers(4, 6));
  r.clear();
  BOOST_TEST(r.empty());
}

BOOST_AUTO_TEST_SUITE_END()

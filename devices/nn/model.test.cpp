// Every layer and loss: analytic gradients against central finite
// differences of the loss, computed in float on small models.
#include "devices/nn/model.hpp"

#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>
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
  auto grad = tensor::empty({m.param_count()});
  const float scale = 1.0f / batch;
  m.train_step(params, x, target, scale, grad);
  const float eps = 1e-2f;
  double worst = 0;
  for (std::int64_t i = 0; i < m.param_count(); ++i) {
    const float saved = params.data()[i];
    params.data()[i] = saved + eps;
    const double up = m.evaluate(params, x, target).loss * scale;
    params.data()[i] = saved - eps;
    const double down = m.evaluate(params, x, target).loss * scale;
    params.data()[i] = saved;
    const double fd = (up - down) / (2.0 * eps);
    const double err =
        std::fabs(fd - grad.data()[i]) / std::max(1.0, std::fabs(fd));
    worst = std::max(worst, err);
  }
  BOOST_TEST(worst < 2e-3);
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

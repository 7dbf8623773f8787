// Custom layers: registered by name, shaped, given parameters and trained
// like the built-in ones; their gradients against finite differences.
#include "devices/nn/custom.hpp"
#include "devices/nn/gradient_check.test.hpp"
#include "devices/nn/model.hpp"

#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>

namespace dv = troupe::devices;
namespace nn = troupe::devices::nn;
using dv::tensor;

namespace {

// y = scale * x + shift, one learned scale per feature and one shift for
// all; `start` is the scales' initial value.
class affine final : public nn::custom_layer {
public:
  explicit affine(const nn::settings& s)
    : start_(static_cast<float>(s.number("start", 1.0, -5, 5))) {}
  dv::shape_t output_shape(const dv::shape_t& in) const override {
    if (in.size() != 1)
      throw std::invalid_argument("needs a flat input");
    return in;
  }
  std::vector<nn::custom_param> params(const dv::shape_t& in) const override {
    nn::custom_param scale{"scale", 1, in[0], nn::param_role::fill, 1, start_};
    nn::custom_param shift{"shift", 1, 1, nn::param_role::weight, in[0], 0};
    return {scale, shift};
  }
  void forward(const float* x, float* y, std::int64_t batch,
               const dv::shape_t& in, const std::vector<const float*>& p,
               bool) const override {
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t f = 0; f < in[0]; ++f)
        y[b * in[0] + f] = p[0][f] * x[b * in[0] + f] + p[1][0];
  }
  void backward(const float* x, const float*, const float* dy, float* dx,
                std::int64_t batch, const dv::shape_t& in,
                const std::vector<const float*>& p,
                const std::vector<float*>& dp) const override {
    dp[1][0] = 0;
    for (std::int64_t f = 0; f < in[0]; ++f) {
      float s = 0;
      for (std::int64_t b = 0; b < batch; ++b) {
        const auto i = b * in[0] + f;
        s += dy[i] * x[i];
        dp[1][0] += dy[i];
        if (dx != nullptr)
          dx[i] = dy[i] * p[0][f];
      }
      dp[0][f] = s;
    }
  }

private:
  float start_;
};

void register_affine() {
  static const bool done = [] {
    nn::register_layer("test_affine", [](const nn::settings& s) {
      return std::make_unique<affine>(s);
    });
    return true;
  }();
  (void)done;
}

nn::layer_spec custom(const std::string& type,
                      std::map<std::string, std::string> settings = {}) {
  nn::layer_spec l{nn::layer_kind::custom, 0};
  l.custom = type;
  l.settings = std::move(settings);
  return l;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

} // namespace

BOOST_AUTO_TEST_SUITE(custom_layers)

BOOST_AUTO_TEST_CASE(a_custom_layer_has_its_shape_parameters_and_gradients) {
  register_affine();
  const std::vector<nn::layer_spec> layers{
      {nn::layer_kind::dense, 5},
      custom("test_affine", {{"start", "0.5"}}),
      {nn::layer_kind::tanh, 0},
      {nn::layer_kind::dense, 3}};
  const auto layout = nn::param_layout(4, layers);
  BOOST_REQUIRE_EQUAL(layout.size(), 6u);
  BOOST_TEST(layout[2].name == "test_affine1.scale");
  BOOST_TEST(layout[2].size() == 5);
  BOOST_TEST(layout[3].name == "test_affine1.shift");
  nn::model m(dv::cpu(), 4, layers, {dv::loss_kind::cross_entropy, 1});
  auto params = tensor::empty({m.param_count()});
  nn::init_params(m.layout(), 7, 0, m.param_count(), params.data());
  for (std::int64_t i = 0; i < 5; ++i)
    BOOST_TEST(params.data()[layout[2].offset + i] == 0.5f); // fill
  // Analytic gradients, the custom layer's included, against central
  // differences.
  const std::int64_t batch = 3;
  auto x = tensor::empty({batch, 4});
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data()[i] = 2 * dv::unit_float(11, std::uint64_t(i)) - 1;
  auto target = tensor::from({batch}, std::vector<float>{0, 2, 1});
  BOOST_TEST(nn::testing::worst_gradient_error(m, params, x, target) < 2e-3);
}

BOOST_AUTO_TEST_CASE(custom_layers_that_do_not_fit_are_named) {
  register_affine();
  BOOST_TEST(error_of([] {
               nn::infer_shapes({1, 2, 2}, {custom("test_affine")});
             }) == "layers[0] (test_affine): needs a flat input");
  BOOST_TEST(error_of([] {
               nn::infer_shapes({4}, {custom("test_affine", {{"start", "9"}})});
             }) == "layers[0].start: 9 is out of range [-5, 5]");
  BOOST_TEST(error_of([] {
               nn::infer_shapes({4}, {custom("test_affine", {{"stat", "1"}})});
             }) == "layers[0].stat: unknown setting for \"test_affine\" (it "
                   "reads: none of the given ones)");
  const auto e =
      error_of([] { nn::infer_shapes({4}, {custom("test_afine")}); });
  BOOST_TEST(e.find("layers[0].type: no layer \"test_afine\" is registered in "
                    "this process (did you mean \"test_affine\"?)") == 0,
             e);
  // A built-in name, or one taken, is refused.
  BOOST_TEST(error_of([] {
               nn::register_layer("dense", [](const nn::settings& s) {
                 return std::make_unique<affine>(s);
               });
             }) == "layer type \"dense\" is a built-in layer");
  BOOST_TEST(error_of([] {
               nn::register_layer("test_affine", [](const nn::settings& s) {
                 return std::make_unique<affine>(s);
               });
             }) == "layer type \"test_affine\" is registered already");
}

BOOST_AUTO_TEST_SUITE_END()

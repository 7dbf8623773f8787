// The layers beyond dense: shape rules and their errors, forward results
// against plain loops, gradients against central finite differences, and
// the reproducibility rules of dropout and batch_norm.
#include "devices/nn/model.hpp"

#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace dv = troupe::devices;
namespace nn = troupe::devices::nn;
using dv::tensor;
using nn::layer_kind;

namespace {

tensor random_tensor(dv::shape_t shape, std::uint64_t seed, float scale = 1) {
  auto t = tensor::empty(std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] =
        scale * (2.0f * dv::unit_float(seed, std::uint64_t(i)) - 1.0f);
  return t;
}

nn::layer_spec conv(std::int64_t channels, std::int64_t kernel,
                    std::int64_t stride = 1, std::int64_t padding = 0) {
  nn::layer_spec l{layer_kind::conv2d, channels};
  l.kernel = kernel;
  l.stride = stride;
  l.padding = padding;
  return l;
}
nn::layer_spec pool(layer_kind k, std::int64_t kernel, std::int64_t stride,
                    std::int64_t padding = 0) {
  nn::layer_spec l{k, 0};
  l.kernel = kernel;
  l.stride = stride;
  l.padding = padding;
  return l;
}
nn::layer_spec of(layer_kind k) {
  return {k, 0};
}
nn::layer_spec dense(std::int64_t units) {
  return {layer_kind::dense, units};
}
nn::layer_spec dropout(float rate) {
  nn::layer_spec l{layer_kind::dropout, 0};
  l.rate = rate;
  return l;
}

std::string shape_error_of(const dv::shape_t& input,
                           const std::vector<nn::layer_spec>& layers) {
  try {
    nn::infer_shapes(input, layers);
  } catch (const nn::shape_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  if (s.find(part) != std::string::npos)
    return true;
  BOOST_TEST_MESSAGE("\"" << s << "\" lacks \"" << part << "\"");
  return false;
}

// The training-mode loss at params (a step whose gradient is thrown away).
double train_loss(nn::model& m, const tensor& params, const tensor& x,
                  const tensor& y, float scale) {
  auto scratch = tensor::empty({m.param_count()});
  return m.train_step(params, x, y, scale, scratch).loss * scale;
}

// Every gradient element of a training step against central finite
// differences of the training-mode loss; running statistics, which are not
// gradients, are skipped. Returns the worst error relative to max(1, |fd|).
double worst_gradient_error(nn::model& m, tensor& params, const tensor& x,
                            const tensor& y) {
  const float scale = 1.0f / static_cast<float>(x.dim(0));
  auto grad = tensor::empty({m.param_count()});
  m.train_step(params, x, y, scale, grad);
  const auto g = grad.to_vector();
  // Small enough that no max-pool window changes its winner (at 1e-2 one
  // did, an error of 0.04), large enough for float differences.
  const float h = 2e-3f;
  double worst = 0;
  for (const auto& b : m.layout()) {
    if (b.role == nn::param_role::running)
      continue;
    const double before = worst;
    worst = 0;
    for (auto i = b.offset; i < b.offset + b.size(); ++i) {
      const float saved = params.data()[i];
      params.data()[i] = saved + h;
      const double up = train_loss(m, params, x, y, scale);
      params.data()[i] = saved - h;
      const double down = train_loss(m, params, x, y, scale);
      params.data()[i] = saved;
      const double fd = (up - down) / (2.0 * h);
      worst = std::max(worst, std::fabs(fd - g[static_cast<std::size_t>(i)]) /
                                  std::max(1.0, std::fabs(fd)));
    }
    BOOST_TEST_MESSAGE(b.name << ": worst " << worst);
    worst = std::max(worst, before);
  }
  return worst;
}

} // namespace

BOOST_AUTO_TEST_SUITE(layer_shapes)

BOOST_AUTO_TEST_CASE(the_example_cnn_has_pytorchs_shapes) {
  const std::vector<nn::layer_spec> layers{conv(32, 3, 1, 1),
                                           of(layer_kind::relu),
                                           pool(layer_kind::max_pool2d, 2, 2),
                                           conv(64, 3, 1, 1),
                                           of(layer_kind::relu),
                                           pool(layer_kind::max_pool2d, 2, 2),
                                           of(layer_kind::flatten),
                                           dense(128),
                                           of(layer_kind::relu),
                                           dense(10)};
  const auto shapes = nn::infer_shapes({1, 28, 28}, layers);
  BOOST_TEST(dv::to_string(shapes[0]) == "[32, 28, 28]");
  BOOST_TEST(dv::to_string(shapes[2]) == "[32, 14, 14]");
  BOOST_TEST(dv::to_string(shapes[5]) == "[64, 7, 7]");
  BOOST_TEST(dv::to_string(shapes[6]) == "[3136]");
  BOOST_TEST(dv::to_string(shapes.back()) == "[10]");
  // PyTorch's parameter count for the same net: 421,642.
  BOOST_TEST(nn::param_count(nn::param_layout({1, 28, 28}, layers)) == 421642);
  // A stride that leaves the last rows out, as PyTorch does: (7+2-3)/2+1.
  BOOST_TEST(dv::to_string(nn::infer_shapes(
                 {2, 7, 7}, {conv(3, 3, 2, 1)})[0]) == "[3, 4, 4]");
}

BOOST_AUTO_TEST_CASE(bad_layers_are_named_with_shapes_and_cause) {
  BOOST_TEST(contains(shape_error_of({1, 4, 4}, {conv(8, 5)}),
                      "layers[0] (conv2d): its 5x5 kernel is larger than its "
                      "input [1, 4, 4] padded by 0"));
  auto wrong_in = conv(8, 3);
  wrong_in.in_channels = 3;
  BOOST_TEST(contains(shape_error_of({1, 28, 28}, {wrong_in}),
                      "layers[0] (conv2d): in_channels = 3 but its input "
                      "[1, 28, 28] has 1 channel(s)"));
  BOOST_TEST(contains(shape_error_of({784}, {conv(8, 3)}),
                      "layers[0] (conv2d): needs an image input [channels, "
                      "height, width], got [784]"));
  BOOST_TEST(contains(
      shape_error_of({1, 3, 3}, {pool(layer_kind::max_pool2d, 2, 2),
                                 pool(layer_kind::max_pool2d, 2, 2)}),
      "layers[1] (max_pool2d): its 2x2 kernel is larger than its input "
      "[1, 1, 1]"));
  BOOST_TEST(contains(shape_error_of({4}, {dropout(1.0f)}),
                      "layers[0] (dropout): rate 1 is outside [0, 1)"));
  BOOST_TEST(contains(shape_error_of({4}, {dropout(-0.1f)}),
                      "layers[0] (dropout): rate -0.1 is outside [0, 1)"));
  BOOST_TEST(
      contains(shape_error_of({2, 3, 5, 5}, {of(layer_kind::batch_norm)}),
               "layers[0] (batch_norm): needs a [features] or "
               "[channels, height, width] input, got [2, 3, 5, 5]"));
  BOOST_TEST(contains(
      shape_error_of({1, 6, 6}, {pool(layer_kind::avg_pool2d, 2, 2, 2)}),
      "padding 2 is more than half the kernel 2"));
}

BOOST_AUTO_TEST_CASE(normalization_blocks_start_as_pytorch_does) {
  const std::vector<nn::layer_spec> layers{
      conv(2, 3), of(layer_kind::batch_norm), of(layer_kind::flatten),
      of(layer_kind::layer_norm)};
  const auto layout = nn::param_layout({1, 4, 4}, layers);
  BOOST_TEST(layout.size() == 7u);
  BOOST_TEST(layout[4].name == "bn0.running");
  std::vector<float> p(static_cast<std::size_t>(nn::param_count(layout)));
  nn::init_params(layout, 3, 0, nn::param_count(layout), p.data());
  auto at = [&](std::size_t b, std::int64_t i) {
    return p[static_cast<std::size_t>(layout[b].offset + i)];
  };
  BOOST_TEST(at(2, 0) == 1.0f); // bn gamma
  BOOST_TEST(at(3, 1) == 0.0f); // bn beta
  BOOST_TEST(at(4, 0) == 0.0f); // running mean
  BOOST_TEST(at(4, 3) == 1.0f); // running variance (row 1, channel 1)
  BOOST_TEST(at(5, 7) == 1.0f); // ln gamma over [2 * 2 * 2]
  BOOST_TEST(layout[5].size() == 8);
  // Each normalization block is whole: a possible shard cut at each start.
  const auto starts = nn::block_starts(layout);
  BOOST_TEST(std::count(starts.begin(), starts.end(), layout[4].offset) == 1);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(layer_forward)

BOOST_AUTO_TEST_CASE(conv2d_is_pytorchs_cross_correlation_with_padding) {
  // Stride 2, padding 1 on a 2-channel 5x5 input, against plain loops.
  const std::int64_t n = 2, c = 2, h = 5, w = 5, o = 3, k = 3, s = 2, p = 1;
  nn::model m(dv::cpu(), dv::shape_t{c, h, w}, {conv(o, k, s, p)},
              {dv::loss_kind::mse, 1});
  auto params = random_tensor({m.param_count()}, 5);
  auto x = random_tensor({n, c * h * w}, 6);
  const auto y = m.forward(params, x).to_vector();
  const std::int64_t oh = 3, ow = 3;
  BOOST_TEST(m.outputs() == o * oh * ow);
  const float* wt = params.data();
  const float* bias = params.data() + o * c * k * k;
  double worst = 0;
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t f = 0; f < o; ++f)
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          double sum = bias[f];
          for (std::int64_t ch = 0; ch < c; ++ch)
            for (std::int64_t u = 0; u < k; ++u)
              for (std::int64_t v = 0; v < k; ++v) {
                const auto r = i * s - p + u, q = j * s - p + v;
                if (r < 0 || r >= h || q < 0 || q >= w)
                  continue;
                sum += double(wt[((f * c + ch) * k + u) * k + v]) *
                       x.data()[((b * c + ch) * h + r) * w + q];
              }
          const auto got =
              y[static_cast<std::size_t>(((b * o + f) * oh + i) * ow + j)];
          worst = std::max(worst, std::fabs(sum - got));
        }
  BOOST_TEST(worst < 1e-5);
}

BOOST_AUTO_TEST_CASE(pools_take_the_max_and_the_padded_mean) {
  // One 4x4 channel, 3x3 windows, stride 2, padding 1.
  auto x =
      tensor::from({1, 16}, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                               11, 12, 13, 14, 15, 16});
  nn::model mx(dv::cpu(), dv::shape_t{1, 4, 4},
               {pool(layer_kind::max_pool2d, 3, 2, 1)},
               {dv::loss_kind::mse, 1});
  BOOST_TEST(mx.forward(tensor{}, x).to_vector() ==
                 (std::vector<float>{6, 8, 14, 16}),
             boost::test_tools::per_element());
  nn::model av(dv::cpu(), dv::shape_t{1, 4, 4},
               {pool(layer_kind::avg_pool2d, 3, 2, 1)},
               {dv::loss_kind::mse, 1});
  // Top-left window: 1+2+5+6 over 9 (padding counted, PyTorch's default).
  const auto a = av.forward(tensor{}, x).to_vector();
  BOOST_TEST(a[0] == 14.0f / 9.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(a[3] == (6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16) / 9.0f,
             boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(max_pool_ties_go_to_the_first_and_overlaps_add_up) {
  // 3x3 windows, stride 1, padding 1, over equal values: each output takes
  // the first element of its window in row-major order, and the gradient
  // of overlapping windows adds up there.
  dv::window_geometry g;
  g.batch = 1;
  g.channels = 1;
  g.out_channels = 1;
  g.in_h = g.in_w = 3;
  g.out_h = g.out_w = 3;
  g.kernel = 3;
  g.stride = 1;
  g.padding = 1;
  auto x = tensor::from({1, 1, 3, 3}, std::vector<float>(9, 1.0f));
  auto y = tensor::zeros({1, 1, 3, 3});
  tensor ws;
  auto& cpu = dv::cpu();
  cpu.pool_forward(dv::pool_kind::max, g, x, y, ws);
  BOOST_TEST(y.to_vector() == std::vector<float>(9, 1.0f),
             boost::test_tools::per_element());
  auto dy = tensor::from({1, 1, 3, 3}, std::vector<float>(9, 1.0f));
  auto dx = tensor::from({1, 1, 3, 3}, std::vector<float>(9, 7.0f));
  cpu.pool_backward(dv::pool_kind::max, g, x, y, ws, dy, dx);
  BOOST_TEST(dx.to_vector() == (std::vector<float>{4, 2, 0, 2, 1, 0, 0, 0, 0}),
             boost::test_tools::per_element());
  // Distinct values: the maximum of each window, its gradient there.
  x = tensor::from({1, 1, 3, 3}, std::vector<float>{5, 1, 2, 3, 4, 9, 8, 6, 7});
  cpu.pool_forward(dv::pool_kind::max, g, x, y, ws);
  BOOST_TEST(y.to_vector() == (std::vector<float>{5, 9, 9, 8, 9, 9, 8, 9, 9}),
             boost::test_tools::per_element());
  cpu.pool_backward(dv::pool_kind::max, g, x, y, ws, dy, dx);
  BOOST_TEST(dx.to_vector() == (std::vector<float>{1, 0, 0, 0, 0, 6, 2, 0, 0}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(layer_gradients)

BOOST_AUTO_TEST_CASE(conv_pool_norm_dropout_net) {
  // Every new layer in one net, smooth activations so differences are
  // well defined; max pooling on random inputs has no ties.
  const std::vector<nn::layer_spec> layers{
      conv(3, 3, 1, 1),
      of(layer_kind::tanh),
      pool(layer_kind::max_pool2d, 2, 2),
      of(layer_kind::batch_norm),
      conv(4, 3, 2, 1),
      pool(layer_kind::avg_pool2d, 2, 1, 1),
      of(layer_kind::flatten),
      of(layer_kind::layer_norm),
      dropout(0.3f),
      dense(6),
      of(layer_kind::batch_norm),
      of(layer_kind::sigmoid),
      dense(3)};
  nn::model m(dv::cpu(), dv::shape_t{2, 6, 6}, layers,
              {dv::loss_kind::cross_entropy, 1});
  m.set_context({nn::noise_key(1, 0, 4, 0), 1.0f});
  auto params = tensor::empty({m.param_count()});
  nn::init_params(m.layout(), 7, 0, m.param_count(), params.data());
  // Non-trivial normalization parameters.
  for (const auto& b : m.layout())
    if (b.role == nn::param_role::scale || b.role == nn::param_role::shift)
      for (auto i = b.offset; i < b.offset + b.size(); ++i)
        params.data()[i] += 0.3f * (dv::unit_float(9, std::uint64_t(i)) - 0.5f);
  auto x = random_tensor({4, 72}, 11);
  auto y = tensor::from({4}, std::vector<float>{0, 2, 1, 2});
  BOOST_TEST(worst_gradient_error(m, params, x, y) < 1e-3);
}

BOOST_AUTO_TEST_CASE(avg_pool_and_conv_without_padding) {
  const std::vector<nn::layer_spec> layers{conv(2, 2), of(layer_kind::sigmoid),
                                           pool(layer_kind::avg_pool2d, 2, 2),
                                           dense(2)};
  nn::model m(dv::cpu(), dv::shape_t{1, 5, 5}, layers, {dv::loss_kind::mse, 1});
  auto params = tensor::empty({m.param_count()});
  nn::init_params(m.layout(), 8, 0, m.param_count(), params.data());
  auto x = random_tensor({3, 25}, 12);
  auto y = random_tensor({3, 2}, 13);
  BOOST_TEST(worst_gradient_error(m, params, x, y) < 1e-3);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(layer_state)

BOOST_AUTO_TEST_CASE(dropout_masks_are_a_pure_function_of_the_step) {
  const std::vector<nn::layer_spec> layers{dropout(0.25f)};
  nn::model m(dv::cpu(), dv::shape_t{1000}, layers, {dv::loss_kind::mse, 1});
  auto x = tensor::empty({4, 1000});
  std::fill_n(x.data(), x.numel(), 1.0f);
  const auto a = nn::noise_key(42, 0, 7, 1);
  BOOST_TEST(a == nn::noise_key(42, 0, 7, 1));
  BOOST_TEST(a != nn::noise_key(42, 0, 7, 2));
  BOOST_TEST(a != nn::noise_key(42, 1, 7, 1));
  BOOST_TEST(a != nn::noise_key(42, 0, 8, 1));
  BOOST_TEST(a != nn::noise_key(43, 0, 7, 1));
  // The mask itself: same key, same mask; another key, another mask; about
  // a quarter dropped; the kept scaled by 1 / (1 - rate).
  auto mask = tensor::empty({4000});
  auto out = tensor::empty({4000});
  auto ones = tensor::empty({4000});
  std::fill_n(ones.data(), 4000, 1.0f);
  dv::cpu().dropout_forward(0.25f, a, ones, mask, out);
  const auto first = out.to_vector();
  dv::cpu().dropout_forward(0.25f, a, ones, mask, out);
  BOOST_TEST(out.to_vector() == first);
  dv::cpu().dropout_forward(0.25f, nn::noise_key(42, 0, 7, 2), ones, mask, out);
  BOOST_TEST(out.to_vector() != first);
  const auto dropped = std::count(first.begin(), first.end(), 0.0f);
  BOOST_TEST(dropped > 900);
  BOOST_TEST(dropped < 1100);
  for (float v : first)
    BOOST_TEST((v == 0.0f || v == 1.0f / 0.75f));
  // Inference: no dropout.
  BOOST_TEST(m.forward(tensor::empty({0}), x).to_vector() == x.to_vector());
}

BOOST_AUTO_TEST_CASE(batch_norm_sends_mean_and_unbiased_variance) {
  // Dense input [B, 3]: per feature statistics over the batch.
  nn::model m(dv::cpu(), dv::shape_t{3}, {of(layer_kind::batch_norm)},
              {dv::loss_kind::mse, 1});
  m.set_context({0, 0.5f}); // one of two workers
  auto params = tensor::empty({m.param_count()});
  nn::init_params(m.layout(), 1, 0, m.param_count(), params.data());
  auto x = tensor::from({4, 3},
                        std::vector<float>{1, 0, 5, 2, 0, 5, 3, 0, 5, 6, 4, 5});
  auto y = tensor::zeros({4, 3});
  auto grad = tensor::empty({m.param_count()});
  m.train_step(params, x, y, 0.25f, grad);
  const auto& run = m.layout()[2];
  const float* g = grad.data() + run.offset;
  // Feature 0: mean 3, unbiased variance (4 + 1 + 0 + 9) / 3.
  BOOST_TEST(g[0] == 0.5f * 3.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(g[3] == 0.5f * 14.0f / 3.0f, boost::test_tools::tolerance(1e-5f));
  BOOST_TEST(g[4] == 0.5f * 4.0f, boost::test_tools::tolerance(1e-5f));
  BOOST_TEST(g[5] == 0.0f);
  // Inference uses the running statistics: with mean 3 and variance 1 for
  // feature 0, x = 4 becomes 1 (gamma 1, beta 0).
  float* p = params.data() + run.offset;
  p[0] = 3.0f;
  p[3] = 1.0f;
  auto one = tensor::from({1, 3}, std::vector<float>{4, 0, 0});
  BOOST_TEST(m.forward(params, one).to_vector()[0] ==
                 4.0f / std::sqrt(1.0f + 1e-5f) -
                     3.0f / std::sqrt(1.0f + 1e-5f),
             boost::test_tools::tolerance(1e-5f));
  // The shard's update: PyTorch's momentum rule.
  const float old_values[2] = {0.0f, 1.0f}, batch[2] = {3.0f, 14.0f / 3.0f};
  float out[2];
  nn::update_running_stats(0.1f, 2, old_values, batch, out);
  BOOST_TEST(out[0] == 0.3f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(out[1] == 0.9f + 0.1f * 14.0f / 3.0f,
             boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_SUITE_END()

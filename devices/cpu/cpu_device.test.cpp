// CPU backend ops against plain reference loops in double precision.
// To add a case: compute the expected values with a naive loop here and
// compare with the op through check_close (per-op bound in its call).
#include "devices/device.hpp"

#include "devices/random.hpp"

#include "devices/check.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

namespace dv = troupe::devices;
using dv::tensor;

namespace {

tensor random_tensor(dv::shape_t shape, std::uint64_t seed) {
  auto t = tensor::empty(std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] =
        2.0f * dv::unit_float(seed, static_cast<std::uint64_t>(i)) - 1.0f;
  return t;
}

void check_close(const tensor& got, const std::vector<double>& want,
                 double bound) {
  BOOST_REQUIRE_EQUAL(got.numel(), static_cast<std::int64_t>(want.size()));
  double err = 0;
  double norm = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(got.data()[i] - want[i]));
    norm = std::max(norm, std::fabs(want[i]));
  }
  BOOST_TEST(err / std::max(norm, 1.0) <= bound);
}

} // namespace

BOOST_AUTO_TEST_SUITE(cpu_ops)

BOOST_AUTO_TEST_CASE(gemm_all_transposes) {
  auto& dev = dv::cpu();
  const std::int64_t m = 7, k = 5, n = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto a = random_tensor(ta ? dv::shape_t{k, m} : dv::shape_t{m, k}, 1);
      auto b = random_tensor(tb ? dv::shape_t{n, k} : dv::shape_t{k, n}, 2);
      auto c = random_tensor({m, n}, 3);
      auto c0 = c.clone();
      dev.gemm(ta, tb, 0.5f, a, b, 2.0f, c);
      std::vector<double> want(static_cast<std::size_t>(m * n));
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (std::int64_t p = 0; p < k; ++p) {
            const double av = ta ? a.data()[p * m + i] : a.data()[i * k + p];
            const double bv = tb ? b.data()[j * k + p] : b.data()[p * n + j];
            s += av * bv;
          }
          want[static_cast<std::size_t>(i * n + j)] =
              0.5 * s + 2.0 * c0.data()[i * n + j];
        }
      check_close(c, want, 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(gemm_on_a_column_block) {
  auto& dev = dv::cpu();
  const std::int64_t rows = 6, width = 9, first = 2, count = 4, n = 3;
  auto a = random_tensor({rows, width}, 11);
  for (int ta = 0; ta < 2; ++ta) {
    // ta = 0: c[rows, n] = a[:, block] * b[count, n];
    // ta = 1: c[count, n] = a[:, block]^T * b[rows, n].
    const auto m = ta ? count : rows;
    const auto k = ta ? rows : count;
    auto b = random_tensor({k, n}, 12);
    auto c = random_tensor({m, n}, 13);
    auto c0 = c.clone();
    dev.gemm_columns(ta, 2.0f, a, first, count, b, 0.5f, c);
    std::vector<double> want(static_cast<std::size_t>(m * n));
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t p = 0; p < k; ++p) {
          const double av = ta ? a.data()[p * width + first + i]
                               : a.data()[i * width + first + p];
          s += av * b.data()[p * n + j];
        }
        want[static_cast<std::size_t>(i * n + j)] =
            2.0 * s + 0.5 * c0.data()[i * n + j];
      }
    check_close(c, want, 1e-6);
  }
  auto c = dv::tensor::empty({rows, n});
  troupe::set_internal_error_throws(true);
  BOOST_CHECK_THROW(
      dev.gemm_columns(false, 1, a, 7, 4, random_tensor({4, n}, 1), 0, c),
      std::logic_error);
  troupe::set_internal_error_throws(false);
}

BOOST_AUTO_TEST_CASE(bias_and_row_sums) {
  auto& dev = dv::cpu();
  auto y = random_tensor({4, 3}, 4);
  auto y0 = y.clone();
  auto b = random_tensor({3}, 5);
  dev.add_row_vector(y, b);
  std::vector<double> want;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      want.push_back(double(y0.data()[i * 3 + j]) + b.data()[j]);
  check_close(y, want, 1e-7);
  auto s = tensor::zeros({3});
  dev.sum_rows(y0, 0.0f, s);
  std::vector<double> sums(3, 0.0);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      sums[static_cast<std::size_t>(j)] += y0.data()[i * 3 + j];
  check_close(s, sums, 1e-6);
}

BOOST_AUTO_TEST_CASE(activations_and_softmax) {
  auto& dev = dv::cpu();
  auto x = random_tensor({3, 4}, 6);
  auto y = tensor::empty({3, 4});
  dev.activation_forward(dv::activation::relu, x, y);
  for (int i = 0; i < 12; ++i)
    BOOST_TEST(y.data()[i] == std::max(0.0f, x.data()[i]));
  dev.activation_forward(dv::activation::sigmoid, x, y);
  std::vector<double> want;
  for (int i = 0; i < 12; ++i)
    want.push_back(1.0 / (1.0 + std::exp(-double(x.data()[i]))));
  check_close(y, want, 1e-6);
  dev.activation_forward(dv::activation::tanh, x, y);
  want.clear();
  for (int i = 0; i < 12; ++i)
    want.push_back(std::tanh(double(x.data()[i])));
  check_close(y, want, 1e-6);
  dev.softmax(x, y);
  want.clear();
  for (int r = 0; r < 3; ++r) {
    double s = 0;
    for (int j = 0; j < 4; ++j)
      s += std::exp(double(x.data()[r * 4 + j]));
    for (int j = 0; j < 4; ++j)
      want.push_back(std::exp(double(x.data()[r * 4 + j])) / s);
  }
  check_close(y, want, 1e-6);
}

BOOST_AUTO_TEST_CASE(cross_entropy_values_and_accuracy) {
  auto& dev = dv::cpu();
  auto z = tensor::from({2, 3}, std::vector<float>{1, 2, 3, 0, 5, -1});
  auto labels = tensor::from({2}, std::vector<float>{2, 0});
  auto d = tensor::empty({2, 3});
  auto sums = dev.loss(dv::loss_kind::cross_entropy, 1.0f, z, labels, 0.5f, &d);
  const double l0 =
      std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  const double l1 =
      std::log(std::exp(0.0) + std::exp(5.0) + std::exp(-1.0)) - 0.0;
  BOOST_TEST(sums.loss == l0 + l1, boost::test_tools::tolerance(1e-5));
  BOOST_TEST(sums.correct == 1); // row 0 right, row 1 wrong
  const double p02 =
      std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  BOOST_TEST(d.data()[2] == 0.5 * (p02 - 1.0),
             boost::test_tools::tolerance(1e-5));
}

BOOST_AUTO_TEST_CASE(mse_and_huber_values) {
  auto& dev = dv::cpu();
  auto p = tensor::from({2, 2}, std::vector<float>{1, 2, 3, 4});
  auto t = tensor::from({2, 2}, std::vector<float>{1, 0, 0.5f, 4});
  auto s = dev.loss(dv::loss_kind::mse, 1.0f, p, t, 1.0f, nullptr);
  // per sample: mean over 2 outputs
  BOOST_TEST(s.loss == (0 + 4) / 2.0 + (6.25 + 0) / 2.0,
             boost::test_tools::tolerance(1e-6));
  auto d = tensor::empty({2, 2});
  auto h = dev.loss(dv::loss_kind::huber, 1.0f, p, t, 1.0f, &d);
  // residuals 0, 2, 2.5, 0 -> 0, 1*(2-0.5), 1*(2.5-0.5), 0
  BOOST_TEST(h.loss == (0 + 1.5) / 2.0 + (2.0 + 0) / 2.0,
             boost::test_tools::tolerance(1e-6));
  BOOST_TEST(d.data()[1] == 0.5f); // delta * sign / outputs
  BOOST_TEST(d.data()[0] == 0.0f);
}

BOOST_AUTO_TEST_SUITE_END()

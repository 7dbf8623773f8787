#include "actors/evaluation.hpp"
#include "actors/stages.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>

namespace troupe::actors {

evaluation evaluate(devices::nn::model& net, const devices::tensor& params,
                    const data::dataset& ds, const job_spec* spec) {
  // The user's metrics, fresh for this evaluation.
  std::vector<std::unique_ptr<stages::metric>> custom;
  auto named = [&](std::size_t i, const std::exception& e) {
    return std::runtime_error(fmt::format("metric[{}] ({} \"{}\"): {}", i,
                                          spec->metrics[i].type,
                                          spec->metrics[i].name, e.what()));
  };
  if (spec != nullptr)
    for (std::size_t i = 0; i < spec->metrics.size(); ++i) {
      try {
        custom.push_back(
            stages::make_metric(spec->metrics[i].type,
                                stages::params(fmt::format("metric[{}]", i),
                                               spec->metrics[i].params),
                                samples_of(*spec)));
      } catch (const std::exception& e) {
        throw named(i, e);
      }
    }
  const std::int64_t chunk = 1000;
  const bool classify = net.loss().kind == devices::loss_kind::cross_entropy;
  const auto ty = ds.samples > 0 ? ds.y.numel() / ds.samples : 0;
  evaluation out;
  out.samples = ds.samples;
  auto& m = out.metrics;
  if (classify) {
    m.classes = net.outputs();
    m.confusion.assign(static_cast<std::size_t>(m.classes * m.classes), 0);
  }
  // Regression, per target column: sums of |error|, error^2, y and y^2.
  std::vector<double> abs_err(static_cast<std::size_t>(ty)),
      sq_err(static_cast<std::size_t>(ty)), sum_y(static_cast<std::size_t>(ty)),
      sum_y2(static_cast<std::size_t>(ty));
  double loss = 0;
  std::int64_t correct = 0;
  for (std::int64_t first = 0; first < ds.samples; first += chunk) {
    const auto n = std::min(chunk, ds.samples - first);
    auto x = ds.x.slice(first * ds.features, n * ds.features)
                 .reshaped({n, ds.features});
    auto y = classify ? ds.y.slice(first, n)
                      : ds.y.slice(first * ty, n * ty).reshaped({n, ty});
    const auto& pred = net.forward(params, x);
    for (std::size_t i = 0; i < custom.size(); ++i) {
      try {
        custom[i]->add(pred.data(), y.data(), n, net.outputs());
      } catch (const std::exception& e) {
        throw named(i, e);
      }
    }
    const auto sums = devices::cpu().loss(
        net.loss().kind, net.loss().huber_delta, pred, y, 0.0f, nullptr);
    loss += sums.loss;
    correct += sums.correct;
    if (!classify) {
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < ty; ++j) {
          const double t = y.data()[i * ty + j];
          const double e = static_cast<double>(pred.data()[i * ty + j]) - t;
          const auto c = static_cast<std::size_t>(j);
          abs_err[c] += std::abs(e);
          sq_err[c] += e * e;
          sum_y[c] += t;
          sum_y2[c] += t * t;
        }
      continue;
    }
    const auto k = m.classes;
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = pred.data() + i * k;
      const auto p = std::max_element(row, row + k) - row;
      const auto t = static_cast<std::int64_t>(y.data()[i]);
      if (t >= 0 && t < k)
        ++m.confusion[static_cast<std::size_t>(t * k + p)];
    }
  }
  if (!classify && ds.samples > 0 && ty > 0) {
    const auto count = static_cast<double>(ds.samples);
    double a = 0, s = 0, r2 = 0;
    for (std::size_t c = 0; c < abs_err.size(); ++c) {
      a += abs_err[c];
      s += sq_err[c];
      const double total = sum_y2[c] - sum_y[c] * sum_y[c] / count;
      // A constant target: R^2 is 1 for a perfect fit, else 0 (sklearn).
      r2 += total > 0 ? 1.0 - sq_err[c] / total : (sq_err[c] == 0 ? 1.0 : 0.0);
    }
    m.mae = a / (count * static_cast<double>(ty));
    m.rmse = std::sqrt(s / (count * static_cast<double>(ty)));
    m.r2 = r2 / static_cast<double>(ty);
  }
  for (std::size_t i = 0; i < custom.size(); ++i) {
    try {
      m.custom[spec->metrics[i].name] = custom[i]->value();
    } catch (const std::exception& e) {
      throw named(i, e);
    }
  }
  out.loss = ds.samples > 0 ? loss / static_cast<double>(ds.samples) : 0;
  if (classify)
    out.accuracy = ds.samples > 0 ? static_cast<double>(correct) /
                                        static_cast<double>(ds.samples)
                                  : 0;
  return out;
}

} // namespace troupe::actors

#pragma once
// For tests: a model's analytic gradient against central finite
// differences of its loss, computed in float.
#include "devices/nn/model.hpp"

#include <algorithm>
#include <cmath>

namespace troupe::devices::nn::testing {

/// The largest relative difference, over every parameter, between the
/// gradient train_step writes (scaled by 1 / batch) and a central
/// difference of the loss with step 1e-2.
inline double worst_gradient_error(model& m, tensor& params, const tensor& x,
                                   const tensor& target) {
  auto grad = tensor::empty({m.param_count()});
  const float scale = 1.0f / static_cast<float>(x.dim(0));
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
    worst = std::max(worst, std::fabs(fd - grad.data()[i]) /
                                std::max(1.0, std::fabs(fd)));
  }
  return worst;
}

} // namespace troupe::devices::nn::testing

#pragma once
/// \file Evaluating parameters on a data set: the evaluator actor's work and
/// `troupe eval`'s, one function so both give the same figures. CAF-free.
#include "actors/job_spec.hpp"
#include "actors/run.hpp"
#include "data/dataset.hpp"
#include "devices/nn/model.hpp"

#include <cstdint>
#include <optional>
#include <vector>

namespace troupe::actors {

/// Loss, accuracy (classification) and the other metrics of a model's
/// parameters on a whole data set.
struct evaluation {
  std::int64_t samples = 0;
  double loss = 0;                ///< mean per-sample loss
  std::optional<double> accuracy; ///< classification only
  eval_metrics metrics;
};

/// Runs net (inference mode) over ds in chunks of 1000 samples. The model's
/// loss decides: cross_entropy is classification with net.outputs()
/// classes. ds's labels must be below that (checked by the caller). With a
/// spec, its [[metric]]s are computed too (metrics.custom); a metric that
/// throws throws std::runtime_error naming it.
evaluation evaluate(devices::nn::model& net, const devices::tensor& params,
                    const data::dataset& ds, const job_spec* spec = nullptr);

} // namespace troupe::actors

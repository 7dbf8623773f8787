#pragma once
/// \file What workers and the evaluator report to the coordinator: plain
/// structs, without CAF (messages.hpp makes them messages), so that what
/// the coordinator makes of them (epochs.hpp) is built and tested light.
#include "actors/run.hpp"

#include <cstdint>
#include <vector>

namespace troupe::actors {

/// A worker's running totals, sent every few steps and at each epoch end.
struct progress_msg {
  std::int32_t worker = 0;
  std::int64_t incarnation = 0;
  std::int64_t steps_done = 0; ///< global steps this worker has finished
  /// Per step since the last report, from first_step on: the loss summed
  /// over the batch, and the batch's samples. Steps done again (after a
  /// restart or a rollback) come again; the coordinator counts each once.
  std::int64_t first_step = 0;
  std::vector<double> losses;
  std::vector<std::int64_t> samples;
  std::int64_t max_lead = 0; ///< largest step - slowest worker's steps seen
  std::int64_t pushed = 0;   ///< gradients sent so far
  double compute_s = 0;      ///< since the last report: forward/backward
  double wait_s = 0;         ///< since the last report: waiting for parameters
  /// The most gradients this worker has held at once, for replay and
  /// reuse: bounded by its replay window however long the job runs.
  std::int64_t grad_buffers = 0;
};

/// Test-set loss and accuracy of one parameter version.
struct eval_msg {
  std::int64_t epoch = 0; ///< 1-based
  double loss = 0;
  double accuracy = -1; ///< -1 for regression
  eval_metrics metrics;
};

} // namespace troupe::actors

#pragma once
/// \file What the coordinator makes of the workers' progress: each step's
/// loss counted once, epochs in order once trained and evaluated, the
/// slowest worker's position, and early stopping (job.patience). No CAF.
#include "actors/job_spec.hpp"
#include "actors/reports.hpp"
#include "actors/run.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace troupe::actors {

/// Per-epoch accounting of a job's training.
class epoch_accounting {
public:
  using clock_type = std::chrono::steady_clock;

  explicit epoch_accounting(job_spec spec);

  /// Training began at `t`: epoch times and wall_s count from here.
  void start(clock_type::time_point t) { t_start_ = t; }

  /// A worker's report, received at `now`. `current`: from the worker's
  /// current incarnation (a stopped one's last words count their losses,
  /// not their position). Steps done again count once. Returns true when
  /// the report completed an epoch's training; false for a report of no
  /// worker of the job.
  bool report(const progress_msg& p, bool current, clock_type::time_point now);

  /// An evaluation of the parameters at the end of epoch `e.epoch`.
  void evaluated(const eval_msg& e);
  /// Whether epoch `epoch` (1-based) has its evaluation.
  bool has_evaluation(std::int64_t epoch) const;

  /// The next epoch in order, once trained and (when `evaluation`)
  /// evaluated; it counts as reported from then on. None otherwise.
  std::optional<epoch_summary> next(bool evaluation);
  /// Epochs reported so far.
  std::int64_t reported() const { return reported_; }
  /// --resume: the first `epochs` were reported by the run that wrote the
  /// checkpoint, whose step is `from_step` (an epoch's first steps may be
  /// among them: its figures count the steps trained here).
  void resumed(std::int64_t epochs, std::int64_t from_step) {
    reported_ = epochs;
    first_step_ = from_step;
  }

  /// Steps the slowest worker has done.
  std::int64_t slowest() const;
  /// Training goes on with worker r at steps[r] (a rollback or resume).
  void workers_at(const std::vector<std::int64_t>& steps);
  /// Mean per-sample loss of the steps newly counted by the last report
  /// that had any.
  double recent_loss() const { return recent_loss_; }

  // Totals over the workers, for the result.
  std::int64_t pushed() const;
  std::int64_t max_lead() const { return max_lead_; }
  double compute_s() const { return compute_s_; }
  double wait_s() const { return wait_s_; }
  std::int64_t gradient_buffers() const { return grad_buffers_; }

private:
  struct evaluation {
    double loss = 0;
    double accuracy = -1; // -1: regression
    eval_metrics metrics;
  };
  struct epoch {
    double loss_sum = 0;
    std::int64_t samples = 0;
    std::int64_t workers_done = 0;
    bool trained = false;
    clock_type::time_point end;
    std::optional<evaluation> eval;
  };

  job_spec spec_;
  clock_type::time_point t_start_;
  std::vector<std::int64_t> steps_done_; // by worker
  // By worker and step: whether its loss was counted.
  std::vector<std::vector<bool>> counted_;
  std::vector<std::int64_t> pushed_; // by worker
  std::int64_t max_lead_ = 0;
  double compute_s_ = 0;
  double wait_s_ = 0;
  std::int64_t grad_buffers_ = 0;
  double recent_loss_ = 0;
  std::map<std::int64_t, epoch> epochs_; // 0-based
  std::int64_t reported_ = 0;
  std::int64_t first_step_ = 0; // trained by this job from here on
};

/// job.patience: keeps the best epoch's parameters by the monitored figure
/// and says when `patience` evaluated epochs in a row were not better.
class early_stopping {
public:
  explicit early_stopping(const job_spec& spec);

  /// Epoch `epoch`'s parameters, kept until its figures are judged.
  void keep(std::int64_t epoch, devices::tensor params);

  enum class verdict {
    go_on,     ///< no change
    keep_best, ///< the last epoch: the result holds the best epoch's
    stop,      ///< stop now with the best epoch's parameters
  };
  /// Epoch `s` (evaluated) is done.
  verdict judge(const epoch_summary& s);

  std::int64_t best_epoch() const { return best_epoch_; }
  double best_value() const { return best_value_; }
  const devices::tensor& best_params() const { return best_params_; }

private:
  std::string monitor_;
  bool maximize_;
  std::int64_t patience_;
  std::int64_t epochs_;
  std::map<std::int64_t, devices::tensor> params_; // by epoch, until judged
  devices::tensor best_params_;
  double best_value_ = 0;
  std::int64_t best_epoch_ = 0;
  std::int64_t since_best_ = 0;
};

} // namespace troupe::actors

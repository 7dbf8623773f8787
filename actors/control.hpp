#pragma once
/// \file A job's `[controller]` (stages.hpp) as the coordinator runs it: the
/// user's controller, the lr scales it decided by epoch, the epochs'
/// parameters it may still want, and what each of its decisions asks the
/// coordinator to do. CAF-free: the coordinator sends and announces.
#include "actors/job_spec.hpp"
#include "actors/run.hpp"
#include "actors/stages.hpp"
#include "devices/tensor.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace troupe::actors {

class job_control {
public:
  /// What judging an epoch asks of the coordinator.
  struct outcome {
    /// The controller threw or decided something out of range: the job
    /// fails with this (it names the controller and the epoch).
    std::string error;
    /// The scales changed: every param shard is told decided().
    bool tell_shards = false;
    /// Stop after this epoch, with its parameters (stopped_params()).
    bool stop = false;
    /// Keep the epoch's model: these parameters, `reason` the controller's.
    std::optional<devices::tensor> checkpoint;
    std::string reason;
    /// The events to announce: "controller" (its decisions) and "failed"
    /// (it threw and was restarted).
    std::vector<job_event> events;
    /// Times the controller was restarted meanwhile.
    std::int64_t restarts = 0;
  };

  /// The controller spec's [controller] names. Throws std::invalid_argument
  /// as stages::make_controller does.
  explicit job_control(const job_spec& spec);

  /// Progress: the slowest worker did `step` of `steps` (recent loss, the
  /// step's lr). The controller's on_step may ask for a stop or a
  /// checkpoint, which the epoch the step is in is given when it is judged.
  /// The outcome's error is set when it asked what only an epoch's
  /// decision may (an lr scale) or failed past its restarts.
  outcome on_step(std::int64_t step, double loss, double lr);

  /// Judges epoch s (its figures as the coordinator reports them).
  ///
  /// A controller that throws is restarted as a failed actor would be: a
  /// fresh one from its factory is told again, in order, every figure the
  /// failed one was told (its decisions on them are not applied again:
  /// they were), then the call that threw is made again. Past
  /// supervision.max_restarts within supervision.within_s the job fails,
  /// naming the controller and what it threw.
  outcome judge(const epoch_summary& s);

  /// Whether epoch e's parameters are wanted: not judged yet, or the epoch
  /// the job stopped after.
  bool wants(std::int64_t epoch) const;
  /// Epoch e's parameters, complete, for its judgment.
  void keep(std::int64_t epoch, devices::tensor params);

  /// The lr scales decided, by epoch (1-based e at e - 1; a stop is 1):
  /// job_spec::lr_at and the param shards' gates read them.
  const std::vector<double>& decided() const { return decided_; }
  /// The epoch the job stopped after (0: none).
  std::int64_t stop_after() const { return stop_after_; }
  /// Its parameters, once here (null before).
  const devices::tensor* stopped_params() const;

private:
  // What the controller was told, in order: an epoch's or a step's figures.
  struct told {
    bool epoch = false;
    stages::epoch_figures e;
    stages::step_figures s;
  };
  // Tells the controller t (and records it); restarts it when it throws.
  // False when it failed for good (out.error says why).
  bool tell(const told& t, stages::decision& d, outcome& out);
  job_event event(std::int64_t step, std::string message) const;

  const job_spec& spec_;
  std::unique_ptr<stages::controller> controller_;
  std::vector<double> decided_;
  std::map<std::int64_t, devices::tensor> judged_; // by epoch, until judged
  std::int64_t stop_after_ = 0;
  std::int64_t last_step_ = 0; // the last step told to on_step
  std::vector<told> history_;
  std::deque<std::chrono::steady_clock::time_point> restarts_;
  // Asked for by on_step, by epoch (1-based), with the step and reason.
  struct asked {
    bool stop = false;
    bool checkpoint = false;
    std::int64_t step = 0;
    std::string reason;
  };
  std::map<std::int64_t, asked> asked_;
};

} // namespace troupe::actors

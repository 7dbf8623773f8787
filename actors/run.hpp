#pragma once
/// \file Running a job: the entry point shared by the CLI, the graph API and
/// the tests. CAF-free, so it is cheap to include.
#include "actors/job_spec.hpp"
#include "runtime/auth.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::actors {

/// What an evaluation measured beyond loss and accuracy.
struct eval_metrics {
  std::int64_t classes = 0; ///< 0: regression
  /// classes x classes, row-major: row = true class, column = predicted.
  std::vector<std::int64_t> confusion;
  double mae = 0;  ///< regression: mean absolute error over every value
  double rmse = 0; ///< regression: root of the mean squared error
  double r2 = 0;   ///< regression: R^2, averaged over the target columns
  std::map<std::string, double> custom; ///< [[metric]] figures, by name
};

/// What one epoch did.
struct epoch_summary {
  std::int64_t epoch = 0;   ///< 1-based
  std::int64_t steps = 0;   ///< steps done so far, all epochs
  double train_loss = 0;    ///< mean per-sample loss over the epoch
  double samples_per_s = 0; ///< training samples / epoch wall time
  double wall_s = 0;        ///< since training started
  double lr = 0;            ///< the learning rate of the epoch's last step
  bool evaluated = false;
  double test_loss = 0;
  std::optional<double> test_accuracy; ///< classification only
  eval_metrics metrics;                ///< when evaluated
};

/// The outcome of a job, as `troupe run --json` prints it.
struct run_result {
  std::string job;
  std::string mode;
  std::int64_t nodes = 1;
  std::int64_t workers = 0;
  std::int64_t epochs = 0;
  std::int64_t steps = 0;
  std::int64_t samples = 0; ///< training samples processed
  double samples_per_s = 0; ///< over training time only
  double train_s = 0;       ///< training time
  double wall_s = 0;        ///< whole run, start-up included
  std::optional<double> test_loss;
  std::optional<double> test_accuracy;
  std::optional<eval_metrics> test_metrics; ///< of the final parameters
  std::string params_digest;                ///< SHA-256 of the final parameters
  std::int64_t param_count = 0;
  /// The final parameters, flattened (devices::nn::param_layout), and what
  /// the model was built for: to save the trained model.
  std::vector<float> params;
  devices::shape_t input_shape;    ///< per sample, as the first layer saw it
  std::int64_t classes = 0;        ///< 0: regression
  std::vector<std::string> labels; ///< CSV text class labels, by index
  std::int64_t restarts = 0;       ///< actor restarts by supervision, in all
  std::map<std::string, std::int64_t> restarts_by_role;
  std::map<std::string, std::int64_t> restarts_by_actor;
  /// Each recovery: from the failure's detection until the restarted
  /// actors were respawned and caught up and the slowest worker then
  /// finished a step.
  std::vector<double> recovery_ms;
  /// Times the whole job went back to its newest checkpoint: a node was
  /// lost, or an actor failed while another recovered.
  std::int64_t rollbacks = 0;
  std::vector<std::string> lost_nodes; ///< by name, in the order lost
  /// Node faults injected by this job ([[chaos]], troupe kill --node): from
  /// the injection until the node was found lost.
  std::vector<double> fault_detection_ms;
  std::int64_t resumed_from = -1; ///< --resume: the checkpoint's step, or -1
  /// job.patience: the epoch whose parameters the result holds (its
  /// figures are test_loss etc.), and whether the job stopped before its
  /// last epoch; best_epoch is 0 without early stopping.
  std::int64_t best_epoch = 0;
  bool stopped_early = false;
  std::int64_t max_lead =
      0; ///< async/ssp: most steps a worker ran ahead of the slowest
  std::int64_t gradients_pushed = 0;
  /// async/ssp: gradients every param shard applied (its ledger at the
  /// end): equal to gradients_pushed when none was lost.
  std::int64_t gradients_applied = 0;
  /// async/ssp: gradients a param shard dropped as applied already (a step
  /// redone after a restart, a replay): never applied twice.
  std::int64_t duplicates_dropped = 0;
  double worker_compute_s = 0; ///< per worker: forward/backward time
  double worker_wait_s = 0;    ///< per worker: time waiting for parameters
  /// The most gradients one worker held at once for replay and reuse.
  std::int64_t gradient_buffers = 0;
  std::string coordinator; ///< host:port where `troupe status` reaches it
  std::map<std::string, std::string> placement; ///< actor -> node
  /// Per worker rank, the device it computed on ("cpu", "cuda:0", ...).
  std::vector<std::string> worker_devices;
  std::vector<epoch_summary> history;
};

/// What `troupe status` shows of a running job.
struct job_status {
  std::string job;
  std::string mode;
  std::string state; ///< starting, training, finished
  std::vector<std::string> nodes;
  std::vector<std::vector<std::string>> node_devices; ///< by node
  std::map<std::string, std::string> placement;
  /// Per worker rank, the device it computes on ("cpu", "cuda:0", ...).
  std::vector<std::string> worker_devices;
  std::vector<std::string> lost_nodes; ///< nodes lost so far
  /// Restarts so far by actor ("worker:1" -> 2); moved off a lost node
  /// counts as one.
  std::map<std::string, std::int64_t> restarts;
  std::int64_t step = 0; ///< steps done by the slowest worker
  std::int64_t steps = 0;
  std::int64_t epochs = 0; ///< of the job
  std::int64_t batch = 0;  ///< samples per step
  double loss = 0;
  double samples_per_s = 0;
  double wall_s = 0;
};

/// Where a job's actors run.
struct cluster_options {
  /// Nodes to use (host:port of `troupe node`); empty: start
  /// cluster.local_nodes node processes on 127.0.0.1, or run in this process
  /// when that is 1.
  std::vector<std::string> nodes;
  /// The executable to start local nodes from (`troupe`); empty: the
  /// `troupe` next to the running program.
  std::string executable;
  /// Publish the coordinator here (for `troupe status`); port 0 = any.
  /// Empty host: do not publish.
  std::string coordinator_host = "127.0.0.1";
  std::uint16_t coordinator_port = 0;
  /// Bound on connecting to a node and on each spawn request.
  double connect_timeout_s = 10;
  /// Whole-job checkpoints go here and stay after the job (empty: snapshots
  /// live in a temporary directory removed at the end).
  std::string checkpoint_dir;
  /// Continue from the newest checkpoint in checkpoint_dir.
  bool resume = false;
  /// What this driver proves to the nodes and its coordinator port asks
  /// of `troupe status`/`kill` (runtime/auth.hpp). Unset with local
  /// nodes: a fresh secret is made for the job.
  runtime::cluster_secret secret;
  /// Set: mutual TLS on every connection (runtime/tls.hpp), local nodes
  /// included.
  std::shared_ptr<const runtime::tls_context> tls;
};

/// What a checkpoint must match to be resumed: a digest of the job spec
/// with every setting that does not decide the bits of the parameters
/// cleared. Epochs may grow; how the job is run (nodes, devices, threads,
/// supervision, chaos, testing hooks such as detached_compute) may change.
std::string job_fingerprint(caf::actor_system& sys, job_spec s);

/// Nodes could not be started or reached (exit code 3).
class cluster_unreachable : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A job that could not finish; what() names the actor and reason.
class training_failed : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Something supervision saw or did, as it happened.
struct job_event {
  /// fault (injected: [[chaos]] or troupe kill), failed (an actor stopped;
  /// a restart follows), rollback (the job goes back to its newest
  /// checkpoint), resumed (training goes on from `step` after a rollback),
  /// node_lost, recovered (the restarted actors caught up and training
  /// went a step further),
  /// early_stop, controller (a controller stage's action; see stages).
  std::string kind;
  std::string actor;     ///< "worker:1" etc.; empty: none
  std::string node;      ///< node name; empty: none or in-process
  std::int64_t step = 0; ///< steps done by the slowest worker then
  double ms = 0;         ///< recovered: since the failure; node_lost:
                         ///< since the fault was injected (0: not injected)
  std::string message;   ///< the line a person reads
  double t = 0; ///< seconds since the coordinator started (job_history)
};

/// A progress report as the coordinator saw it.
struct progress_point {
  std::int64_t step = 0; ///< steps done by the slowest worker
  double t = 0;          ///< seconds since the coordinator started
  double loss = 0;       ///< recent mean train loss
  double lr = 0;         ///< the schedule's learning rate at `step`
};

/// An epoch's figures as the coordinator saw them; NaN: not measured.
struct epoch_point {
  std::int64_t epoch = 0;
  std::int64_t step = 0; ///< steps done at its end
  double t = 0;          ///< when it was reported (coordinator clock)
  double train_loss = 0;
  double test_loss = 0;
  double test_accuracy = 0;
  double samples_per_s = 0;
};

/// What a running job has done so far, for dashboards (`troupe status
/// --dashboard`): progress (thinned evenly to at most 2,000 points; see
/// history_recorder), every epoch and every supervision event.
struct job_history {
  std::vector<progress_point> progress;
  std::vector<epoch_point> epochs;
  std::vector<job_event> events;
  double t = 0; ///< now, on the coordinator's clock
};

/// An epoch's model a controller asked to keep (stages::decision::
/// checkpoint), as a job ends with one: `model` holds its parameters and
/// what saving them needs (trained_model_of), best_epoch = epoch.
struct epoch_checkpoint {
  std::int64_t epoch = 0;
  std::string reason; ///< the controller's, maybe empty
  run_result model;
};

/// Callbacks while a job runs; all are called on the caller's thread.
struct run_observer {
  /// steps done (by the slowest worker) of total, recent train loss, the
  /// lr of the step (schedule and controller).
  std::function<void(std::int64_t, std::int64_t, double, double)> on_progress;
  std::function<void(const epoch_summary&)> on_epoch;
  /// One line of information (data loaded, actors placed).
  std::function<void(const std::string&)> on_info;
  /// Supervision's events; unset: each goes to on_info as its message.
  std::function<void(const job_event&)> on_event;
  /// The job's nodes and actors: when training starts and after each
  /// supervision event (restarts, lost nodes).
  std::function<void(const job_status&)> on_status;
  /// A controller asked to keep an epoch's model; unset: on_info says so.
  std::function<void(const epoch_checkpoint&)> on_checkpoint;
};

/// Loads and checks the data, resolves the spec, runs the job on an
/// embedded actor system and returns its result. Throws config_error or
/// data_error for bad input and training_failed when training fails.
run_result run_job(job_spec spec, const run_observer& observer = {},
                   const cluster_options& cluster = {});

} // namespace troupe::actors

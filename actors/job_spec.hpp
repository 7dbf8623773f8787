#pragma once
/// \file A training job as the pipeline file describes it, checked.
#include "actors/roles.hpp"
#include "devices/device.hpp"
#include "devices/nn/layers.hpp"
#include "devices/nn/model.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace troupe::runtime {
class config;
}
namespace troupe::stages {
struct sample_info;
}

namespace troupe::actors {

/// One `[[chaos]]` entry: a fault to inject when training reaches a step.
struct chaos_event {
  std::string action = "kill"; ///< kill | freeze (freeze: nodes only)
  std::string role;            ///< worker, data_shard, ...; "node" for a node
  std::int32_t index = 0;      ///< the actor's index (roles)
  std::string node;            ///< the node's name (role "node")
  std::int64_t at_step = 0;    ///< global step (0-based)
  /// Which incarnation of the actor it hits: the k-th entry (by at_step)
  /// naming an actor kills its k-th restart, so a restarted actor does not
  /// die again at the same step.
  std::int64_t incarnation = 0;

  std::string target() const;
};

/// A custom stage in the pipeline (`[[stage]]`, `[controller]`; see
/// actors/stages.hpp): its registered type and its settings as text.
struct stage_spec {
  std::string type{}; ///< empty: none (a job without a controller)
  std::map<std::string, std::string> params{};
  std::string name{}; ///< [[metric]]: what its figure is called
};

/// The learning rate over the job ([optimizer.schedule]): an optional
/// linear warmup from lr / warmup_steps to lr, then constant, step (times
/// gamma every step_size steps) or cosine (from lr down to min_lr at the
/// last step). Steps are the job's global steps.
struct lr_schedule {
  std::string type = "constant"; ///< constant | step | cosine
  std::int64_t warmup_steps = 0;
  std::int64_t step_size = 0; ///< step
  double gamma = 0.1;         ///< step
  double min_lr = 0;          ///< cosine
};

/// Everything a pipeline says, validated; the same on every node.
struct job_spec {
  // [job]
  std::string name = "job";
  std::string mode = "sync";
  std::int64_t staleness = 0;
  std::uint64_t seed = 42;
  std::int64_t epochs = 1;
  /// Early stopping: end the job after this many evaluated epochs without
  /// an improvement of `monitor`, keeping the best epoch's parameters; 0:
  /// off.
  std::int64_t patience = 0;
  /// test_loss, test_accuracy, test_mae, test_rmse or test_r2.
  std::string monitor = "test_loss";
  /// Whether a larger value of the monitored figure is better.
  bool monitor_maximizes() const {
    return monitor == "test_accuracy" || monitor == "test_r2";
  }
  // [data]
  std::string format = "idx";
  std::vector<std::string> train;
  std::vector<std::string> test;
  std::int64_t shards = 1;
  std::int64_t batch = 64;
  std::string target;        ///< csv target column
  std::int64_t classes = -1; ///< csv: 0 regression; idx: inferred
  /// Resolved from the training data: CSV text class labels by class index
  /// (sorted); empty when labels are numbers.
  std::vector<std::string> labels;
  std::int64_t prefetch = 4; ///< batches a worker may have outstanding
  /// data.shape: the per-sample shape the first layer sees; resolved from
  /// the data when the pipeline leaves it out (IDX images [1, rows,
  /// cols], CSV [features]).
  devices::shape_t input_shape;
  // [model]
  std::vector<devices::nn::layer_spec> layers;
  devices::nn::loss_spec loss;
  std::int64_t partitions = 1;
  // [optimizer]
  devices::optimizer_config optimizer;
  lr_schedule schedule;
  /// Clip the summed gradient of each optimizer step to this global L2
  /// norm (over every param shard, in canonical order); 0: no clipping.
  double clip_norm = 0;
  // [cluster]
  std::int64_t local_nodes = 1;
  std::int64_t workers = 1;
  std::string device = "cpu"; ///< cpu | cuda | any: where workers compute
  /// Per worker rank, the device it computes on ("cpu", "cuda:0", ...):
  /// set by the driver from the placement; empty means every one on "cpu".
  std::vector<std::string> worker_devices;
  std::int64_t threads = 0; ///< scheduler threads per node; 0 = one per core
  // [supervision]
  std::string strategy = "one_for_one";
  std::int64_t max_restarts = 10;
  double within_s = 60;
  std::int64_t snapshot_every = 100;
  double heartbeat_s = 0.5;
  double heartbeat_timeout_s = 5;
  // [[stage]]: data stages, in the order a batch passes them
  std::vector<stage_spec> stages;
  // [controller]
  stage_spec controller;
  // [[metric]]: figures of the test set besides loss and accuracy
  std::vector<stage_spec> metrics;
  // [[chaos]]
  std::vector<chaos_event> chaos;
  // [placement]: role -> node names (one, or one per index, cycling)
  std::map<std::string, std::vector<std::string>> placement;
  // [testing]: hooks for tests and rehearsals
  std::int64_t slow_worker = -1; ///< this worker rank waits slow_ms per step
  std::int64_t slow_ms = 0;
  /// Workers on the CPU compute each step on a detached helper, as GPU
  /// workers do: that path, tested where no GPU is.
  bool detached_compute = false;
  /// `troupe bench allreduce`: workers send fixed gradients without data or
  /// compute, shards publish the sum without an optimizer step.
  bool exchange_only = false;

  /// Set per actor at spawn: 0 the first time, then 1, 2, ... for each
  /// restart by its supervisor. A restarted actor waits to be told where
  /// training is (workers) or to be given its state (param shards).
  std::int64_t incarnation = 0;

  // Resolved from the data before the job starts.
  std::int64_t inputs = 0;  ///< features per sample
  std::int64_t outputs = 0; ///< units of the last layer
  std::int64_t train_samples = 0;
  std::int64_t steps_per_epoch = 0;

  std::int64_t total_steps() const { return epochs * steps_per_epoch; }
  /// The shape the model is built for: input_shape, or [inputs] before
  /// it is resolved.
  devices::shape_t model_input() const {
    return input_shape.empty() ? devices::shape_t{inputs} : input_shape;
  }
  /// job.mode == "sync"; what differs by mode is update_rule's.
  bool synchronous() const { return mode == "sync"; }
  /// The learning rate of global step `step` (1-based) by the schedule.
  double lr_at(std::int64_t step) const;
  /// The same with a [controller]'s decisions: `decided[e - 1]`, the lr
  /// scale decided after epoch e, applies to the steps of epoch e + 2 on.
  double lr_at(std::int64_t step, const std::vector<double>& decided) const;
  /// update_rule(*this).step_of_version(version).
  std::int64_t step_of_version(std::int64_t version) const;
  /// update_rule(*this).versions_per_epoch().
  std::int64_t versions_per_epoch() const;
  bool classification() const {
    return loss.kind == devices::loss_kind::cross_entropy;
  }
  /// What worker `rank`'s layers need at global step `step`: its dropout
  /// key, a pure function of (seed, epoch, step, rank), and its share of
  /// the batch statistics (1 / workers in sync mode, where the shards sum
  /// the workers' shares; 1 where each gradient is applied alone).
  devices::nn::step_context step_context(std::int64_t step,
                                         std::int32_t rank) const;
  /// First flattened parameter of param shard s (s = partitions: the
  /// total), for a model of `params` parameters. Shards split by size, each
  /// cut moved to the nearest block start (devices::nn::block_starts), so
  /// that a shard's slice completes whole blocks of the forward pass.
  std::int64_t shard_begin(std::int64_t s, std::int64_t params) const;
  /// The step at which the actor ROLE:INDEX of this incarnation is to be
  /// killed by a [[chaos]] entry, or -1.
  std::int64_t chaos_kill_step(role r, std::int32_t index) const;
};

/// The samples a data stage of `s` is made for (s resolved).
stages::sample_info samples_of(const job_spec& s);
/// Makes each data stage of `s` (resolved) once: throws
/// runtime::config_error naming the stage for an unknown type or bad
/// settings. Called by resolve_job_spec.
void check_stages(const job_spec& s);

/// Reads and checks every key; throws runtime::config_error naming the key,
/// its file:line:column and what is wrong. Unknown keys are errors.
job_spec parse_job_spec(runtime::config& cfg);

/// Checks the spec against the training data (feature count, classes) and
/// fills the resolved fields. Throws runtime::config_error or data_error.
struct data_facts {
  std::int64_t samples = 0;
  std::int64_t features = 0;
  std::int64_t classes = 0; ///< 0 = regression
  std::int64_t targets = 1;
  std::string description;
  devices::shape_t sample_shape;   ///< empty: [features]
  std::vector<std::string> labels; ///< CSV text class labels
};
void resolve_job_spec(job_spec& spec, const data_facts& train,
                      const data_facts* test);

} // namespace troupe::actors

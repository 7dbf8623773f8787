#pragma once
/// \file The protocol's vocabulary: atoms, message structs and their CAF
/// inspection. Who takes which message, and who sends it to whom, is in
/// protocol.hpp, which includes this. Heavy (CAF): include it from .cpp
/// files that speak the protocol (the roles, the driver, `troupe status`
/// and `kill`), never from a header; what a node needs of the roles is in
/// roles.hpp.
#include "actors/job_spec.hpp"
#include "actors/reports.hpp"
#include "actors/roles.hpp"
#include "actors/run.hpp"
#include "data/dataset.hpp"
#include "runtime/bulk_caf.hpp"
#include "runtime/caf_types.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <map>
#include <memory>

namespace troupe::devices {
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, optimizer_config& x) {
  return f(caf::meta::type_name("optimizer_config"), x.kind, x.lr, x.momentum,
           x.beta1, x.beta2, x.eps, x.weight_decay);
}
} // namespace troupe::devices

namespace troupe::devices::nn {
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, layer_spec& x) {
  return f(caf::meta::type_name("layer_spec"), x.kind, x.units, x.kernel,
           x.stride, x.padding, x.in_channels, x.rate, x.eps, x.momentum,
           x.custom, x.settings);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, loss_spec& x) {
  return f(caf::meta::type_name("loss_spec"), x.kind, x.huber_delta);
}
} // namespace troupe::devices::nn

namespace troupe::actors {

/// (credit_atom, int32 worker, int64 taken, int64 n, actor worker) to a
/// data shard: the worker took the batch of step `taken` (-1: none yet)
/// and has room for n more.
using credit_atom = caf::atom_constant<caf::atom("credit")>;
using wire_atom = caf::atom_constant<caf::atom("wire")>;
using ready_atom = caf::atom_constant<caf::atom("ready")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using loaded_atom = caf::atom_constant<caf::atom("loaded")>;
using progress_atom = caf::atom_constant<caf::atom("progress")>;
using epoch_atom = caf::atom_constant<caf::atom("epoch")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using info_atom = caf::atom_constant<caf::atom("info")>;
using event_atom = caf::atom_constant<caf::atom("event")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using history_atom = caf::atom_constant<caf::atom("history")>;
using control_atom = caf::atom_constant<caf::atom("control")>;
/// (keep_model_atom, int64 epoch, tensor params, string reason)
/// coordinator -> listener: a controller asked to keep that epoch's model.
using keep_model_atom = caf::atom_constant<caf::atom("keepmodel")>;
// Supervision and recovery (see supervisor.hpp).
using resubscribe_atom = caf::atom_constant<caf::atom("resub")>;
using recover_atom = caf::atom_constant<caf::atom("recover")>;
using replay_atom = caf::atom_constant<caf::atom("replay")>;
using prune_atom = caf::atom_constant<caf::atom("prune")>;
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;
using version_atom = caf::atom_constant<caf::atom("version")>;
using republish_atom = caf::atom_constant<caf::atom("republish")>;
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
using restore_atom = caf::atom_constant<caf::atom("restore")>;
using durable_atom = caf::atom_constant<caf::atom("durable")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using evaluated_atom = caf::atom_constant<caf::atom("evaluated")>;
/// optimizer.clip_norm (sync): a shard's sums of squares of a step's
/// gradient, per segment, to the coordinator; the step's scale back.
using clip_atom = caf::atom_constant<caf::atom("clip")>;
/// (kill_atom, string "ROLE:INDEX") to the coordinator -> string: "" when
/// killed (as a crash would: its supervisor restarts it), else why not.
/// (checkpoint_atom) to the snapshot store -> (int64 version,
/// vector<shard_state_msg> by shard, vector<string> problems).
using checkpoint_atom = caf::atom_constant<caf::atom("checkpoint")>;
/// (duplicate_atom, int32 shard, int32 worker, int64 seq) to the
/// coordinator: an async gradient dropped as applied already.
using duplicate_atom = caf::atom_constant<caf::atom("duplicate")>;
/// (applied_atom, int32 shard, int64 gradients) to the coordinator: an
/// async shard's ledger at the end.
using applied_atom = caf::atom_constant<caf::atom("applied")>;
using kill_atom = caf::atom_constant<caf::atom("kill")>;

/// The samples of (epoch, step) for one worker.
struct batch_msg {
  std::int64_t epoch = 0;
  std::int64_t step = 0; ///< within the epoch
  std::int32_t worker = 0;
  devices::tensor x;
  devices::tensor y;
};

/// A worker's gradient for one parameter shard's range.
/// A gradient (or, past an aggregator, the sum of the canonical subtree of
/// worker ranks [lo, hi)), whole or one shard's range of it.
struct grad_msg {
  std::int32_t worker = 0; ///< sender (first rank of the subtree)
  std::int64_t step = 0;   ///< global step (epoch * steps_per_epoch + step)
  std::int64_t seq = 0;    ///< per-worker sequence number
  std::int32_t lo = 0;     ///< subtree of worker ranks the values sum over
  std::int32_t hi = 1;
  std::int64_t offset = 0; ///< first element within the flattened vector
  devices::tensor values;
};

/// A parameter shard's range at a version.
struct params_msg {
  std::int32_t shard = 0;
  std::int64_t version = 0; ///< sync: steps applied; else gradients applied
  std::int64_t offset = 0;
  devices::tensor values;
  std::int32_t target = -1; ///< worker rank it answers, -1 = every worker
  std::int64_t tag = 0;     ///< to the evaluator: the epoch (1-based); -1 final
  std::int64_t min_clock =
      0; ///< async/ssp: fewest steps any worker has applied
};

/// A param shard's state at a version: its snapshot (to the coordinator's
/// store) and, after a restart, what it is restored from.
struct shard_state_msg {
  std::int32_t shard = 0;
  std::int64_t version = 0;
  devices::tensor params;
  std::vector<devices::tensor> optimizer_state;
  std::vector<std::int64_t> ledger; ///< async/ssp: last seq applied, by worker
};

using dataset_ptr = std::shared_ptr<const data::dataset>;

/// Every actor of a job, as the driver spawned them (local to the driver).
struct topology {
  std::vector<caf::actor> data_shards;
  /// Data stages: stage:(position * shards + shard) at that index.
  std::vector<caf::actor> stages;
  std::vector<caf::actor> param_shards;
  std::vector<caf::actor> aggregators; ///< one per node with workers
  std::vector<caf::actor> workers;
  caf::actor evaluator; ///< invalid without test data
  std::vector<std::int32_t> aggregator_of_worker;
  std::vector<std::int32_t> data_shard_of_worker;
  std::map<std::string, std::string> placement; ///< actor -> node
  std::map<caf::actor_addr, std::string> names; ///< actor -> "worker:0"
  std::int64_t nodes = 1;
  std::vector<std::string> node_names;
  /// What each node offers workers ("cpu", "cuda:0", ...), by node.
  std::vector<std::vector<std::string>> node_devices;
  /// Node managers by node (empty: every actor is in the driver's process);
  /// supervision respawns actors through them.
  std::vector<caf::actor> managers;
  /// What the nodes file this job's actors under, and the driver's actor
  /// whose end makes them stop the job (runtime/node_protocol.hpp).
  std::string job_id;
  caf::actor owner;
};

/// Where the job's snapshots go, and whether it resumes (local to the
/// driver).
struct snapshot_options {
  std::string dir;     ///< empty: a temporary directory of the job's own
  bool keep = false;   ///< a checkpoint directory: the files stay
  bool resume = false; ///< start from the newest checkpoint in dir
  std::int32_t shards = 1;
  std::string job; ///< fingerprint written into and checked against files
  /// The store does its file I/O on a thread of its own, never on the
  /// scheduler's. Off only under CAF's test scheduler, which runs every
  /// actor on the test's thread.
  bool own_thread = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch_msg& x) {
  return f(caf::meta::type_name("batch_msg"), x.epoch, x.step, x.worker, x.x,
           x.y);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, grad_msg& x) {
  return f(caf::meta::type_name("grad_msg"), x.worker, x.step, x.seq, x.lo,
           x.hi, x.offset, x.values);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, params_msg& x) {
  return f(caf::meta::type_name("params_msg"), x.shard, x.version, x.offset,
           x.values, x.target, x.tag, x.min_clock);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_state_msg& x) {
  return f(caf::meta::type_name("shard_state_msg"), x.shard, x.version,
           x.params, x.optimizer_state, x.ledger);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, progress_msg& x) {
  return f(caf::meta::type_name("progress_msg"), x.worker, x.incarnation,
           x.steps_done, x.first_step, x.losses, x.samples, x.max_lead,
           x.pushed, x.compute_s, x.wait_s, x.grad_buffers);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, eval_metrics& x) {
  return f(caf::meta::type_name("eval_metrics"), x.classes, x.confusion, x.mae,
           x.rmse, x.r2, x.custom);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, eval_msg& x) {
  return f(caf::meta::type_name("eval_msg"), x.epoch, x.loss, x.accuracy,
           x.metrics);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_status& x) {
  return f(caf::meta::type_name("job_status"), x.job, x.mode, x.state, x.nodes,
           x.node_devices, x.placement, x.worker_devices, x.lost_nodes,
           x.restarts, x.step, x.steps, x.epochs, x.batch, x.loss,
           x.samples_per_s, x.wall_s);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_event& x) {
  return f(caf::meta::type_name("job_event"), x.kind, x.actor, x.node, x.step,
           x.ms, x.message, x.t);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, progress_point& x) {
  return f(caf::meta::type_name("progress_point"), x.step, x.t, x.loss, x.lr);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, epoch_point& x) {
  return f(caf::meta::type_name("epoch_point"), x.epoch, x.step, x.t,
           x.train_loss, x.test_loss, x.test_accuracy, x.samples_per_s);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_history& x) {
  return f(caf::meta::type_name("job_history"), x.progress, x.epochs, x.events,
           x.t);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chaos_event& x) {
  return f(caf::meta::type_name("chaos_event"), x.action, x.role, x.index,
           x.node, x.at_step, x.incarnation);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lr_schedule& x) {
  return f(caf::meta::type_name("lr_schedule"), x.type, x.warmup_steps,
           x.step_size, x.gamma, x.min_lr);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stage_spec& x) {
  return f(caf::meta::type_name("stage_spec"), x.type, x.params, x.name);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_spec& x) {
  return f(caf::meta::type_name("job_spec"), x.name, x.mode, x.staleness,
           x.seed, x.epochs, x.patience, x.monitor, x.format, x.train, x.test,
           x.shards, x.batch, x.target, x.classes, x.labels, x.prefetch,
           x.input_shape, x.layers, x.loss, x.partitions, x.optimizer,
           x.schedule, x.clip_norm, x.local_nodes, x.workers, x.device,
           x.worker_devices, x.threads, x.strategy, x.max_restarts, x.within_s,
           x.snapshot_every, x.heartbeat_s, x.heartbeat_timeout_s, x.stages,
           x.controller, x.metrics, x.chaos, x.incarnation, x.placement,
           x.slow_worker, x.slow_ms, x.detached_compute, x.exchange_only,
           x.inputs, x.outputs, x.train_samples, x.steps_per_epoch);
}

/// Whether [offset, offset + n) is a non-empty slice of `total` elements:
/// pieces from the data plane are checked before they are used.
inline bool slice_fits(std::int64_t offset, std::int64_t n,
                       std::int64_t total) {
  return offset >= 0 && n > 0 && offset <= total && n <= total - offset;
}

/// A role spawned with an index its job does not have (a request that did
/// not come from this job's driver): the actor ends at once with an error
/// naming it. Returns true then; the role returns an empty behavior.
template <class Self>
bool refuse_index(Self* self, role r, std::int64_t index, std::int64_t count) {
  if (index >= 0 && index < count)
    return false;
  self->quit(caf::make_error(
      caf::sec::invalid_argument,
      std::string(name_of(r)) + ":" + std::to_string(index) +
          " does not exist in a job of " + std::to_string(count)));
  return true;
}

/// The most steps ahead of its own a message may be for: further is no
/// peer of this job (a sync worker is at most a step or two ahead; ssp's
/// staleness is a few steps), and holding it would let a peer grow memory.
constexpr std::int64_t max_steps_ahead = 1 << 16;

/// Elements per piece for slices sent to another process: large transfers
/// go as a stream of 1 MiB pieces, which the receiver assembles by offset
/// and can act on before the last arrives.
constexpr std::int64_t chunk_elements = 1 << 18;

/// Frame kinds of grad_msg and params_msg on the data plane
/// (runtime/bulk.hpp); the tags carry their fields in declaration order.
constexpr std::uint32_t grad_frame = 1;
constexpr std::uint32_t params_frame = 2;
inline std::uint32_t frame_kind(const grad_msg&) {
  return grad_frame;
}
inline std::uint32_t frame_kind(const params_msg&) {
  return params_frame;
}
inline std::vector<std::int64_t> frame_tags(const grad_msg& g) {
  return {g.worker, g.step, g.seq, g.lo, g.hi, g.offset};
}
inline std::vector<std::int64_t> frame_tags(const params_msg& p) {
  return {p.shard, p.version, p.offset, p.target, p.tag, p.min_clock};
}

/// The message a data-plane frame carries (set as the plane's decoder).
caf::message decode_frame(runtime::bulk_header&& h, devices::tensor&& t);

static_assert(chunk_elements <=
                  static_cast<std::int64_t>(runtime::max_bulk_elements),
              "data-plane pieces must fit what the plane accepts");

/// Sends a grad_msg or params_msg. In-process it goes whole (no copy); to
/// another process it goes in pieces, over the data plane where there is
/// one, else through CAF.
template <class Self, class Msg>
void send_slices(Self* self, const caf::actor& dest, Msg msg) {
  // A handle to an actor that was gone when its wiring was read arrives
  // null (CAF 0.17); what is sent to it is dropped, as to any dead actor.
  if (!dest)
    return;
  const auto n = msg.values.numel();
  if (dest.node() == self->node()) {
    self->send(dest, std::move(msg));
    return;
  }
  std::int64_t first = 0;
  do {
    const auto len = std::min(chunk_elements, n - first);
    Msg piece = msg;
    piece.offset = msg.offset + first;
    piece.values = msg.values.slice(first, len);
    if (!runtime::bulk_send(self->id(), dest, frame_kind(piece),
                            frame_tags(piece), piece.values))
      self->send(dest, std::move(piece));
    first += len;
  } while (first < n);
}

/// Each role registers its spawn function under its name ("data_shard",
/// "param_shard", "aggregator", "worker", "evaluator", "coordinator").
/// Arguments: data_shard(job_spec, int32 index), stage(job_spec, int32
/// index), param_shard(job_spec,
/// int32 index), aggregator(job_spec, int32 index, int32 lo, int32 hi) for
/// worker ranks [lo, hi), worker(job_spec, int32 rank), evaluator(job_spec),
/// coordinator(job_spec, actor listener, topology) (local only).
void register_data_shard(caf::actor_system_config& cfg);
void register_stage(caf::actor_system_config& cfg);
void register_param_shard(caf::actor_system_config& cfg);
void register_worker(caf::actor_system_config& cfg);
void register_aggregator(caf::actor_system_config& cfg);
void register_evaluator(caf::actor_system_config& cfg);
void register_coordinator(caf::actor_system_config& cfg);

/// The coordinator's snapshot store (snapshot_store.cpp), linked to `owner`.
/// Messages: (snapshot_atom, shard_state_msg, int64 offset, int64 total) ->
/// files it, then (durable_atom, int32 shard, int64 version) to
/// `coordinator`; (load_atom, int32 shard) -> (shard_state_msg,
/// vector<string> problems); (checkpoint_atom) -> the newest checkpoint
/// (see checkpoint_atom).
caf::actor spawn_snapshot_store(caf::local_actor* owner, snapshot_options opts,
                                caf::actor coordinator);

/// The snapshot files in `dir` (param_shard-S-vN.snap): (shard, version,
/// path), sorted.
std::vector<std::tuple<std::int32_t, std::int64_t, std::string>>
list_snapshots(const std::string& dir);

/// Loads a dataset on a detached actor (file I/O stays off the scheduler
/// threads) and sends (loaded_atom, dataset_ptr) or an error to `owner`.
void load_in_background(caf::event_based_actor* owner, data::source_spec src);

/// The data sources of a spec.
data::source_spec train_source(const job_spec& spec);
data::source_spec test_source(const job_spec& spec);

} // namespace troupe::actors

// Local only: between the coordinator and the caller in one process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::dataset_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::epoch_summary)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::run_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::topology)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::snapshot_options)

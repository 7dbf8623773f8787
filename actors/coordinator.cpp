// coordinator: one per job, in the driver's process. Wires the actors the
// driver placed, starts training when every worker and the evaluator are
// ready, turns worker progress and evaluations into epoch summaries for its
// listener, answers `troupe status`, and ends the job with the digest of
// the final parameters.
//
// It is also the job's supervisor (DESIGN §4): an actor that stops is
// respawned on its node with its incarnation counted, rewired, and brought
// back to where training is: a worker is told its step and fetches that
// version; a data shard is resubscribed by its workers; an aggregator gets
// its workers' last gradients again; a param shard is restored from its
// newest good snapshot and the workers replay the steps since. Strategies
// one_for_one, one_for_all and rest_for_one act within the failed actor's
// role. More than max_restarts restarts of a role within
// within_s, or any failure before training starts, ends the job with a
// message naming the actor and its last error. Snapshots go to a store in
// this process.
#include "actors/checkpoint_ledger.hpp"
#include "actors/messages.hpp"
#include "actors/placement.hpp"
#include "actors/roles.hpp"

#include "devices/nn/layers.hpp"
#include "devices/nn/ranges.hpp"
#include "runtime/digest.hpp"
#include "runtime/node_protocol.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include <unistd.h>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

using clock_type = std::chrono::steady_clock;

struct epoch_acc {
  double loss_sum = 0;
  std::int64_t samples = 0;
  std::int64_t workers_done = 0;
  bool train_done = false;
  clock_type::time_point end;
  std::optional<eval_msg> eval;
};

// A whole parameter vector assembled from the shards' pieces; a piece that
// comes again (from a restarted shard) counts once.
struct parameters {
  devices::tensor values;
  devices::nn::range_set have;

  // Adds a piece; true when this piece completed the vector.
  bool add(const params_msg& p, std::int64_t total) {
    if (complete(total))
      return false;
    if (!values.defined())
      values = devices::tensor::empty({total});
    auto dst = values.slice(p.offset, p.values.numel());
    devices::cpu().copy(p.values, dst);
    have.add(p.offset, p.offset + p.values.numel());
    return complete(total);
  }
  bool complete(std::int64_t total) const { return have.count() == total; }
};

struct coordinator_state {
  job_spec spec;
  caf::actor listener;
  topology topo;
  std::int64_t expected_ready = 0;
  std::set<std::string> ready_names;
  bool started = false;
  bool finished = false;
  // --checkpoint-dir: the final parameters are checkpointed before the job
  // ends. By shard, the version each was asked to write (-1: not answered).
  bool final_requested = false;
  bool final_given_up = false;
  bool final_on_disk = false; // --resume of a finished job
  // Snapshots the store could not write since the last one it could.
  std::int64_t snapshot_failures = 0;
  // job.patience: evaluated epochs' parameters until emitted, the best so
  // far, and evaluated epochs since it.
  std::map<std::int64_t, devices::tensor> epoch_params;
  devices::tensor best_params;
  double best_value = 0;
  std::int64_t best_epoch = 0;
  std::int64_t epochs_since_best = 0;
  bool stopped_early = false;
  std::vector<std::int64_t> final_versions;
  clock_type::time_point t_start;
  clock_type::time_point t_train_end;
  std::vector<std::int64_t> steps_done; // by worker
  // By worker and step: whether its loss was counted. A worker that
  // redoes steps (restarted, or the job rolled back) reports them again.
  std::vector<std::vector<bool>> counted;
  std::vector<std::int64_t> pushed; // by worker
  std::int64_t max_lead = 0;
  double compute_s = 0;          // summed over workers
  std::int64_t grad_buffers = 0; // the most one worker held at once
  double wait_s = 0;
  std::int64_t reported_steps = -1;
  double recent_loss = 0;
  std::map<std::int64_t, epoch_acc> epochs;
  std::int64_t emitted_epochs = 0;
  parameters final;
  run_result result;
  // Evaluation: each epoch's parameters, kept until evaluated.
  std::map<std::int64_t, parameters> milestones;
  // Supervision.
  std::int64_t param_count = 0;
  snapshot_options snap;
  caf::actor store;
  // Lost nodes (killed, or silent past the heartbeat timeout): their actors
  // run on the surviving nodes now.
  std::set<std::string> lost_nodes;
  std::map<caf::actor_addr, std::size_t> manager_of; // node manager -> node
  // A rollback to the newest checkpoint (node loss, a failure during a
  // recovery, --resume) in progress: answers of an older one are dropped.
  std::int64_t generation = 0;
  bool rolling = false;
  std::vector<bool> chaos_done; // by spec.chaos entry (node faults)
  std::map<std::string, clock_type::time_point> faulted; // node -> when
  // async/ssp: each shard's ledger at the end.
  std::map<std::int32_t, std::int64_t> applied;
  // By worker: the step its current incarnation started at (it kept no
  // gradients from before).
  std::vector<std::int64_t> first_step;
  std::map<std::string, std::int64_t> incarnation; // by actor name
  std::map<std::string, std::deque<clock_type::time_point>> restart_times;
  // The snapshots on disk, the newest checkpoint, what workers keep.
  checkpoint_ledger ledger;
  // optimizer.clip_norm (sync): per step, each shard's segment sums of
  // squares until all are in, then the step's scale (kept for replays).
  std::map<std::int64_t, std::map<std::int32_t, std::vector<double>>>
      clip_parts;
  std::map<std::int64_t, float> clip_scales;
  struct recovery {
    clock_type::time_point detected;
    std::int64_t slowest; // the slowest worker's steps then
  };
  std::vector<recovery> recovering;
};

using self_ptr = caf::stateful_actor<coordinator_state>*;

// Answers and timers remember the generation they began in: once the job
// has rolled back (a new generation), they are stale and dropped.
bool stale(self_ptr self, std::int64_t gen) {
  return gen != self->state.generation;
}

void shutdown(self_ptr self, caf::error reason) {
  auto& t = self->state.topo;
  auto stop = [&](std::vector<caf::actor>& v) {
    for (auto& a : v)
      self->send_exit(a, caf::exit_reason::user_shutdown);
    v.clear();
  };
  stop(t.workers);
  stop(t.aggregators);
  stop(t.data_shards);
  stop(t.param_shards);
  if (t.evaluator)
    self->send_exit(t.evaluator, caf::exit_reason::user_shutdown);
  t.evaluator = nullptr;
  self->quit(std::move(reason));
}

void fail(self_ptr self, std::string why) {
  auto& st = self->state;
  if (st.finished)
    return;
  st.finished = true;
  self->send(st.listener, failed_atom::value, std::move(why));
  shutdown(self, caf::exit_reason::user_shutdown);
}

void maybe_finish(self_ptr self);
std::string last_checkpoint(const coordinator_state& st);

// Whether the final state of every param shard is on disk (only asked for
// with --checkpoint-dir). Asks the first time.
bool final_checkpoint_written(self_ptr self) {
  auto& st = self->state;
  if (!st.snap.keep || st.spec.exchange_only || st.final_given_up ||
      st.final_on_disk || st.stopped_early)
    return true;
  const auto shards = static_cast<std::size_t>(st.spec.partitions);
  if (!st.final_requested) {
    st.final_requested = true;
    st.final_versions.assign(shards, -1);
    const auto gen = st.generation;
    for (std::size_t p = 0; p < shards; ++p)
      self->request(st.topo.param_shards[p], std::chrono::seconds(30),
                    snapshot_atom::value, done_atom::value)
          .then(
              [=](std::int64_t version) {
                if (stale(self, gen))
                  return;
                self->state.final_versions[p] = version;
                maybe_finish(self);
              },
              [=](caf::error& err) {
                auto& st = self->state;
                if (stale(self, gen) || st.finished)
                  return;
                st.final_given_up = true;
                self->send(st.listener, info_atom::value,
                           fmt::format("the final checkpoint was not written "
                                       "(param_shard:{}: {}); the newest is "
                                       "{}",
                                       p, self->system().render(err),
                                       last_checkpoint(st)));
                maybe_finish(self);
              });
    // A store that cannot write (a full disk) never reports the files.
    self->delayed_send(self, std::chrono::seconds(60), snapshot_atom::value,
                       done_atom::value, gen);
    return false;
  }
  return st.ledger.written(st.final_versions);
}

void maybe_finish(self_ptr self) {
  auto& st = self->state;
  if (st.finished || !st.final.complete(st.param_count) ||
      (!st.stopped_early &&
       (st.emitted_epochs < st.spec.epochs ||
        (!st.spec.synchronous() &&
         static_cast<std::int64_t>(st.applied.size()) < st.spec.partitions))) ||
      !final_checkpoint_written(self))
    return;
  st.finished = true;
  auto& r = st.result;
  r.job = st.spec.name;
  r.mode = st.spec.mode;
  r.nodes = st.topo.nodes;
  r.placement = st.topo.placement;
  r.worker_devices = st.spec.worker_devices;
  r.workers = st.spec.workers;
  r.epochs = st.spec.epochs;
  r.steps = st.spec.total_steps();
  r.samples = r.steps * st.spec.batch;
  r.train_s =
      std::chrono::duration<double>(st.t_train_end - st.t_start).count();
  r.samples_per_s =
      r.train_s > 0 ? static_cast<double>(r.samples) / r.train_s : 0;
  r.param_count = st.param_count;
  r.params_digest =
      runtime::sha256_hex(st.final.values.data(), st.final.values.bytes());
  r.params.assign(st.final.values.data(),
                  st.final.values.data() + st.final.values.numel());
  r.input_shape = st.spec.model_input();
  r.classes = st.spec.classification() ? st.spec.outputs : 0;
  r.labels = st.spec.labels;
  r.max_lead = st.max_lead;
  r.worker_compute_s = st.compute_s / static_cast<double>(st.spec.workers);
  r.gradient_buffers = st.grad_buffers;
  r.worker_wait_s = st.wait_s / static_cast<double>(st.spec.workers);
  r.gradients_pushed =
      std::accumulate(st.pushed.begin(), st.pushed.end(), std::int64_t{0});
  if (!st.applied.empty()) {
    r.gradients_applied = st.applied.begin()->second;
    for (const auto& [shard, n] : st.applied)
      r.gradients_applied = std::min(r.gradients_applied, n);
  }
  const epoch_summary* figures =
      r.history.empty() ? nullptr : &r.history.back();
  if (st.best_epoch > 0) {
    r.best_epoch = st.best_epoch;
    r.stopped_early = st.stopped_early;
    for (const auto& e : r.history)
      if (e.epoch == st.best_epoch)
        figures = &e;
  }
  if (figures != nullptr && figures->evaluated) {
    r.test_loss = figures->test_loss;
    r.test_accuracy = figures->test_accuracy;
    r.test_metrics = figures->metrics;
  }
  self->send(st.listener, done_atom::value, r);
  shutdown(self, caf::exit_reason::normal);
}

// job.patience: whether epoch s is the best so far; ends the job with the
// best epoch's parameters once `patience` epochs in a row were not.
// Returns true when it stopped the job.
bool watch_epoch(self_ptr self, const epoch_summary& s) {
  auto& st = self->state;
  const auto& m = st.spec.monitor;
  const double value = m == "test_accuracy" ? s.test_accuracy.value_or(0)
                       : m == "test_mae"    ? s.metrics.mae
                       : m == "test_rmse"   ? s.metrics.rmse
                       : m == "test_r2"     ? s.metrics.r2
                                            : s.test_loss;
  auto params = st.epoch_params.find(s.epoch);
  const bool better = st.best_epoch == 0 ||
                      (st.spec.monitor_maximizes() ? value > st.best_value
                                                   : value < st.best_value);
  if (better && params != st.epoch_params.end()) {
    st.best_value = value;
    st.best_epoch = s.epoch;
    st.best_params = params->second;
    st.epochs_since_best = 0;
  } else {
    ++st.epochs_since_best;
  }
  if (params != st.epoch_params.end())
    st.epoch_params.erase(params);
  const bool last = s.epoch >= st.spec.epochs;
  if ((st.epochs_since_best < st.spec.patience && !last) ||
      !st.best_params.defined())
    return false;
  // The result holds the best epoch's parameters, whether the job stops
  // here or ran to its last epoch.
  st.final = parameters{};
  params_msg whole;
  whole.offset = 0;
  whole.values = st.best_params;
  st.final.add(whole, st.param_count);
  if (last)
    return false; // maybe_finish ends it as usual
  st.stopped_early = true;
  self->send(st.listener, info_atom::value,
             fmt::format("early stopping: {} epoch(s) without a better {} "
                         "than epoch {}'s {:.6g}; stopping after epoch {} and "
                         "keeping epoch {}'s parameters",
                         st.spec.patience, m, st.best_epoch, st.best_value,
                         s.epoch, st.best_epoch));
  maybe_finish(self);
  return true;
}

void emit_epochs(self_ptr self) {
  auto& st = self->state;
  while (st.emitted_epochs < st.spec.epochs) {
    auto it = st.epochs.find(st.emitted_epochs);
    if (it == st.epochs.end() || !it->second.train_done)
      return;
    auto& acc = it->second;
    if (st.topo.evaluator && !acc.eval)
      return;
    epoch_summary s;
    s.epoch = st.emitted_epochs + 1;
    s.steps = s.epoch * st.spec.steps_per_epoch;
    s.lr = st.spec.lr_at(s.steps);
    s.train_loss =
        acc.samples > 0 ? acc.loss_sum / static_cast<double>(acc.samples) : 0;
    // The epoch before may have run in an earlier job (--resume).
    const auto prev = st.epochs.find(st.emitted_epochs - 1);
    const auto begin = prev != st.epochs.end() && prev->second.train_done
                           ? prev->second.end
                           : st.t_start;
    const double secs = std::chrono::duration<double>(acc.end - begin).count();
    s.samples_per_s =
        secs > 0
            ? static_cast<double>(st.spec.steps_per_epoch * st.spec.batch) /
                  secs
            : 0;
    s.wall_s = std::chrono::duration<double>(acc.end - st.t_start).count();
    if (acc.eval) {
      s.evaluated = true;
      s.test_loss = acc.eval->loss;
      if (acc.eval->accuracy >= 0)
        s.test_accuracy = acc.eval->accuracy;
      s.metrics = acc.eval->metrics;
    }
    st.result.history.push_back(s);
    self->send(st.listener, epoch_atom::value, s);
    ++st.emitted_epochs;
    if (st.spec.patience > 0 && s.evaluated && watch_epoch(self, s))
      return; // stopped early
  }
  maybe_finish(self);
}

// The handles each actor talks to. Wiring is idempotent: after a restart
// the peers of the new actor are wired again.
void wire_shard(self_ptr self, std::size_t p) {
  auto& t = self->state.topo;
  self->send(t.param_shards[p], wire_atom::value, t.aggregators,
             t.aggregator_of_worker, t.evaluator,
             caf::actor_cast<caf::actor>(self));
}

std::vector<caf::actor> workers_of(const topology& t, std::size_t a) {
  std::vector<caf::actor> local;
  for (std::size_t r = 0; r < t.workers.size(); ++r)
    if (t.aggregator_of_worker[r] == static_cast<std::int32_t>(a))
      local.push_back(t.workers[r]);
  return local;
}

void wire_aggregator(self_ptr self, std::size_t a) {
  auto& t = self->state.topo;
  self->send(t.aggregators[a], wire_atom::value, workers_of(t, a),
             t.param_shards);
}

void wire_worker(self_ptr self, std::size_t r) {
  auto& t = self->state.topo;
  const auto d = t.data_shard_of_worker[r];
  const auto a = t.aggregator_of_worker[r];
  // A worker alone on its node has nothing to sum with: it sends its
  // gradient to the shards itself, piece by piece while it computes.
  const bool alone = std::count(t.aggregator_of_worker.begin(),
                                t.aggregator_of_worker.end(), a) == 1;
  self->send(t.workers[r], wire_atom::value,
             t.aggregators[static_cast<std::size_t>(a)],
             d >= 0 ? t.data_shards[static_cast<std::size_t>(d)] : caf::actor{},
             caf::actor_cast<caf::actor>(self),
             alone ? t.param_shards : std::vector<caf::actor>{});
}

void wire(self_ptr self) {
  auto& t = self->state.topo;
  for (std::size_t p = 0; p < t.param_shards.size(); ++p)
    wire_shard(self, p);
  for (std::size_t a = 0; a < t.aggregators.size(); ++a)
    wire_aggregator(self, a);
  for (std::size_t r = 0; r < t.workers.size(); ++r)
    wire_worker(self, r);
  if (t.evaluator)
    self->send(t.evaluator, wire_atom::value,
               caf::actor_cast<caf::actor>(self));
}

// An epoch's parameters, complete: to the evaluator (kept until evaluated).
void send_milestone(self_ptr self, std::int64_t epoch) {
  auto& st = self->state;
  if (!st.topo.evaluator)
    return;
  params_msg m;
  m.tag = epoch;
  m.values = st.milestones[epoch].values;
  send_slices(self, st.topo.evaluator, std::move(m));
}

// The newest step every param shard has a snapshot of, for messages.
std::string last_checkpoint(const coordinator_state& st) {
  const auto version = st.ledger.checkpoint();
  if (version < 0)
    return "none";
  return st.snap.keep ? fmt::format("step {} in {}", version, st.snap.dir)
                      : fmt::format("step {}", version);
}

// A snapshot is on disk. Workers keep their gradients from the second
// newest snapshot of each shard on (a corrupt newest one falls back to it).
void on_durable(self_ptr self, std::int32_t shard, std::int64_t version) {
  auto& st = self->state;
  const auto prune = st.ledger.durable(shard, version);
  if (prune.all)
    for (auto& w : st.topo.workers)
      self->send(w, prune_atom::value, *prune.all);
  for (const auto& [w, keep] : prune.by_worker)
    self->send(st.topo.workers[w], prune_atom::value, keep);
}

// The role of an actor named by to_string(actor_id).
const char* role_of(const std::string& name) {
  return name_of(parse_actor_id(name).kind);
}

caf::actor* slot_of(topology& t, const actor_id& a) {
  auto at = [&](std::vector<caf::actor>& v) -> caf::actor* {
    return a.index >= 0 && static_cast<std::size_t>(a.index) < v.size()
               ? &v[static_cast<std::size_t>(a.index)]
               : nullptr;
  };
  switch (a.kind) {
    case role::worker:
      return at(t.workers);
    case role::data_shard:
      return at(t.data_shards);
    case role::param_shard:
      return at(t.param_shards);
    case role::aggregator:
      return at(t.aggregators);
    case role::evaluator:
      return &t.evaluator;
  }
  return nullptr;
}

std::int64_t slowest_steps(const coordinator_state& st) {
  return st.steps_done.empty()
             ? 0
             : *std::min_element(st.steps_done.begin(), st.steps_done.end());
}

// A restarted worker fetches the versions the shards hold only once its
// aggregator relays to it: a version published between the fetch and that
// rewiring would go to the old handle. The aggregator may be restarting
// too: each try asks the current one, for a second.
void fetch_when_relayed(self_ptr self, const std::string& name, caf::actor h,
                        std::int64_t step, int tries) {
  auto& t = self->state.topo;
  const auto index = parse_actor_id(name).index;
  const auto a = static_cast<std::size_t>(
      t.aggregator_of_worker[static_cast<std::size_t>(index)]);
  wire_aggregator(self, a);
  const auto gen = self->state.generation;
  self->request(t.aggregators[a], std::chrono::seconds(1), wire_atom::value)
      .then(
          [=](bool) {
            auto& st = self->state;
            if (stale(self, gen))
              return; // the job rolled back meanwhile
            // The worker kept no gradients from before `step`: the
            // shards snapshot at once, so that a restore needs none.
            for (auto& p : st.topo.param_shards) {
              self->send(p, fetch_atom::value, step, index, h);
              self->send(p, snapshot_atom::value);
            }
          },
          [=](caf::error& err) {
            if (stale(self, gen))
              return;
            if (tries > 1) {
              fetch_when_relayed(self, name, h, step, tries - 1);
              return;
            }
            fail(self, fmt::format("recovering {}: its aggregator did not "
                                   "answer: {}",
                                   name, self->system().render(err)));
          });
}

void rollback(self_ptr self, const std::string& why);

// The restarted actor `name` is `h`: wire it and its peers, and bring it
// back to where training is.
void recover(self_ptr self, const std::string& name, caf::actor h) {
  auto& st = self->state;
  const auto gen = st.generation;
  auto& t = st.topo;
  const auto id = parse_actor_id(name);
  const auto kind = id.kind;
  const auto index = id.index;
  const auto i = static_cast<std::size_t>(index);
  *slot_of(t, id) = h;
  t.names[h.address()] = name;
  self->monitor(h);
  const auto timeout = std::chrono::seconds(30);
  if (kind == role::worker) {
    // Shards are at most one version apart (sync): the worker redoes the
    // oldest step any shard still waits for.
    // async/ssp: it redoes the oldest of its gradients some shard has not
    // applied (those that have drop it as a duplicate).
    auto versions = std::make_shared<std::vector<std::int64_t>>();
    auto left = std::make_shared<std::size_t>(t.param_shards.size());
    auto on_version = [=](std::int64_t v) {
      if (stale(self, gen))
        return; // the job rolled back meanwhile
      versions->push_back(v);
      if (--*left > 0)
        return;
      const auto step = *std::min_element(versions->begin(), versions->end());
      self->state.first_step[i] = step;
      self->send(h, recover_atom::value, step);
      wire_worker(self, i);
      fetch_when_relayed(self, name, h, step, 30);
    };
    auto on_error = [=](caf::error& err) {
      if (stale(self, gen))
        return;
      fail(self, fmt::format("recovering {}: a param shard did not answer: {}",
                             name, self->system().render(err)));
    };
    for (auto& p : t.param_shards) {
      if (st.spec.synchronous())
        self->request(p, timeout, version_atom::value)
            .then(on_version, on_error);
      else
        self->request(p, timeout, version_atom::value, index)
            .then(on_version, on_error);
    }
  } else if (kind == role::data_shard) {
    for (std::size_t r = 0; r < t.workers.size(); ++r)
      if (t.data_shard_of_worker[r] == index)
        wire_worker(self, r);
  } else if (kind == role::aggregator) {
    // The shards learn the new handle first: the workers' replays through
    // it are answered through it.
    wire_aggregator(self, i);
    auto left = std::make_shared<std::size_t>(t.param_shards.size());
    for (std::size_t p = 0; p < t.param_shards.size(); ++p) {
      wire_shard(self, p);
      self->send(t.param_shards[p], republish_atom::value, h);
      self->request(t.param_shards[p], timeout, wire_atom::value)
          .then(
              [=](bool) {
                auto& st = self->state;
                if (stale(self, gen) || --*left > 0)
                  return;
                for (std::size_t r = 0; r < st.topo.workers.size(); ++r)
                  if (st.topo.aggregator_of_worker[r] == index)
                    wire_worker(self, r);
              },
              [=](caf::error& err) {
                if (stale(self, gen))
                  return;
                // A shard that does not answer fails on its own; a later
                // recovery rewires the workers.
                self->send(self->state.listener, info_atom::value,
                           fmt::format("recovering {}: a param shard did not "
                                       "confirm its wiring: {}",
                                       name, self->system().render(err)));
              });
    }
  } else if (kind == role::param_shard) {
    self->request(st.store, timeout, load_atom::value, index)
        .then(
            [=](shard_state_msg& m, std::vector<std::string>& problems) {
              auto& t = self->state.topo;
              for (auto& why : problems)
                self->send(self->state.listener, info_atom::value,
                           fmt::format("{}: snapshot refused, falling back to "
                                       "an older one: {}",
                                       name, why));
              const auto from = m.version;
              auto& st = self->state;
              if (stale(self, gen))
                return; // the job rolled back meanwhile
              // Where each worker's replay begins: the snapshot's step
              // (sync), or the first gradient its ledger lacks (async).
              std::vector<std::int64_t> replay_from(t.workers.size(), from);
              if (!st.spec.synchronous())
                for (std::size_t r = 0; r < replay_from.size(); ++r)
                  replay_from[r] = m.ledger.size() == replay_from.size()
                                       ? m.ledger[r] + 1
                                       : 0;
              std::string lacking;
              for (std::size_t r = 0; r < replay_from.size(); ++r)
                if (replay_from[r] < st.first_step[r])
                  lacking = fmt::format("worker:{}", r);
              if (!lacking.empty()) {
                // The steps since `from` cannot be replayed: go back to a
                // checkpoint from which nothing needs replaying.
                rollback(self,
                         fmt::format("{} can only be restored to version {}, "
                                     "but {} was restarted since and kept no "
                                     "gradients from before its restart",
                                     name, from, lacking));
                return;
              }
              self->send(h, restore_atom::value, std::move(m));
              wire_shard(self, i);
              for (std::size_t a = 0; a < t.aggregators.size(); ++a)
                wire_aggregator(self, a);
              for (std::size_t r = 0; r < t.workers.size(); ++r) {
                wire_worker(self, r);
                self->send(t.workers[r], replay_atom::value, index,
                           replay_from[r]);
              }
              self->send(self->state.listener, info_atom::value,
                         fmt::format("{} restored from version {}; the "
                                     "workers replay the steps since",
                                     name, from));
            },
            [=](caf::error& err) {
              if (stale(self, gen))
                return;
              fail(self, fmt::format("recovering {}: the snapshot store did "
                                     "not answer: {}",
                                     name, self->system().render(err)));
            });
  } else if (kind == role::evaluator) {
    // Shards send epoch parameters through us: they need no rewiring.
    self->send(h, wire_atom::value, caf::actor_cast<caf::actor>(self));
    for (auto& [epoch, params] : st.milestones)
      if (params.complete(st.param_count))
        send_milestone(self, epoch);
  }
}

// The node `name` is to run on: its own, or, when that node was lost, the
// one rehome() picks (a GPU worker may change device there). Returns the
// node's index, or none (why says why) when no surviving node can take it.
std::optional<std::size_t> home_of(coordinator_state& st,
                                   const std::string& name, std::string& why) {
  auto& t = st.topo;
  const auto& node = t.placement[name];
  if (st.lost_nodes.count(node) == 0) {
    const auto n = static_cast<std::size_t>(
        std::find(t.node_names.begin(), t.node_names.end(), node) -
        t.node_names.begin());
    if (n < t.managers.size())
      return n;
  }
  std::vector<node_slot> slots;
  for (std::size_t n = 0; n < t.node_names.size(); ++n)
    slots.push_back({t.node_names[n], n < t.node_devices.size()
                                          ? t.node_devices[n]
                                          : std::vector<std::string>{}});
  const auto id = parse_actor_id(name);
  const auto home = rehome(name_of(id.kind), id.index, st.spec, slots,
                           st.lost_nodes, t.placement);
  if (!home.node) {
    why = home.why;
    return std::nullopt;
  }
  t.placement[name] = t.node_names[*home.node];
  if (!home.device.empty())
    st.spec.worker_devices[static_cast<std::size_t>(id.index)] = home.device;
  return home.node;
}

void node_lost(self_ptr self, std::size_t n, const std::string& why);

// Spawns actor `name` again, its incarnation counted: on its node, or on a
// surviving one when its node was lost. `then` gets the new handle (the
// default: recover it alone).
void respawn(self_ptr self, const std::string& name,
             std::function<void(caf::actor)> then = nullptr) {
  auto& st = self->state;
  auto& t = st.topo;
  if (!then) {
    const auto gen = st.generation;
    then = [=](caf::actor h) {
      if (stale(self, gen) || self->state.finished) {
        // The job rolled back meanwhile; that spawned everything anew.
        self->send_exit(h, caf::exit_reason::user_shutdown);
        return;
      }
      recover(self, name, std::move(h));
    };
  }
  const auto id = parse_actor_id(name);
  const std::string role_name = name_of(id.kind);
  // The node first: a GPU worker that moves may change device.
  std::optional<std::size_t> n;
  if (!t.managers.empty()) {
    std::string why;
    n = home_of(st, name, why);
    if (!n) {
      fail(self, fmt::format("cannot restart {}: {}", name, why));
      return;
    }
  }
  auto spec = st.spec;
  spec.incarnation = ++st.incarnation[name];
  auto args = spawn_args(id, spec, t.aggregator_of_worker);
  if (t.managers.empty()) {
    auto h = self->system().spawn<caf::actor>(role_name, std::move(args));
    if (!h) {
      fail(self, fmt::format("cannot restart {}: {}", name,
                             self->system().render(h.error())));
      return;
    }
    then(*h);
    return;
  }
  const auto node = t.node_names[*n];
  self->request(t.managers[*n], std::chrono::seconds(30),
                runtime::spawn_atom::value, t.job_id, t.owner, role_name,
                std::move(args))
      .then([=](caf::actor& h) { then(std::move(h)); },
            [=](caf::error& err) {
              auto& st = self->state;
              if (st.finished)
                return;
              if (st.lost_nodes.count(node) == 0 &&
                  err != caf::sec::request_timeout) {
                fail(self, fmt::format("cannot restart {} on node {}: {}", name,
                                       node, self->system().render(err)));
                return;
              }
              // The node went away while we asked it: it is lost too.
              node_lost(self, *n,
                        fmt::format("it did not spawn {}: {}", name,
                                    self->system().render(err)));
            });
}

// The names the strategy restarts when `name` fails: itself (one_for_one),
// every actor of its role (one_for_all), or itself and those of its role
// with a higher index (rest_for_one).
std::vector<std::string> restart_set(const coordinator_state& st,
                                     const std::string& name) {
  const auto id = parse_actor_id(name);
  if (st.spec.strategy == "one_for_one" || id.kind == role::evaluator)
    return {name};
  const auto& t = st.topo;
  const auto count =
      id.kind == role::worker ? t.workers.size() : t.data_shards.size();
  std::vector<std::string> out{name};
  for (std::size_t i = 0; i < count; ++i) {
    const auto k = static_cast<std::int32_t>(i);
    if (k == id.index || (st.spec.strategy == "rest_for_one" && k < id.index))
      continue;
    out.push_back(to_string(actor_id{id.kind, k}));
  }
  return out;
}

// Every training actor stops (the evaluator too when its node is lost);
// their names are dropped first, so their down messages are ignored.
void stop_training_actors(self_ptr self) {
  auto& st = self->state;
  auto& t = st.topo;
  auto stop = [&](caf::actor& a) {
    if (!a)
      return;
    t.names.erase(a.address());
    self->send_exit(a, caf::exit_reason::user_shutdown);
    a = nullptr;
  };
  for (auto* v : {&t.workers, &t.aggregators, &t.data_shards, &t.param_shards})
    for (auto& a : *v)
      stop(a);
  if (st.lost_nodes.count(t.placement["evaluator"]) > 0)
    stop(t.evaluator);
}

// The actors are there again: the param shards take the checkpoint's state
// (version 0: the seeded start), everything is wired, and the workers go on
// from its step.
void restore_all(self_ptr self, std::int64_t version,
                 const std::vector<shard_state_msg>& states,
                 std::optional<clock_type::time_point> detected,
                 bool evaluator_new) {
  auto& st = self->state;
  auto& t = st.topo;
  for (std::size_t p = 0; p < t.param_shards.size(); ++p) {
    shard_state_msg m;
    m.shard = static_cast<std::int32_t>(p);
    if (p < states.size())
      m = states[p];
    self->send(t.param_shards[p], restore_atom::value, std::move(m));
  }
  wire(self);
  if (evaluator_new)
    for (auto& [epoch, params] : st.milestones)
      if (params.complete(st.param_count))
        send_milestone(self, epoch);
  // sync: every worker at the checkpoint's step. async/ssp: each at the
  // first of its gradients some shard's ledger lacks, with the current
  // parameters (shards that have it drop it as a duplicate).
  for (std::size_t r = 0; r < t.workers.size(); ++r) {
    auto step = version;
    if (!st.spec.synchronous()) {
      step = states.empty() ? 0 : std::numeric_limits<std::int64_t>::max();
      for (const auto& m : states)
        step = std::min(step, m.ledger.size() == t.workers.size()
                                  ? m.ledger[r] + 1
                                  : std::int64_t{0});
    }
    st.steps_done[r] = step;
    st.first_step[r] = step;
    self->send(t.workers[r], recover_atom::value, step);
    if (!st.spec.synchronous())
      for (auto& p : t.param_shards)
        self->send(p, fetch_atom::value, step, static_cast<std::int32_t>(r),
                   t.workers[r]);
  }
  st.recovering.clear();
  if (detected) // a failure's recovery (not a resume): timed
    st.recovering.push_back({*detected, slowest_steps(st)});
  st.ledger.restart_from(version);
  st.rolling = false;
  self->send(st.listener, info_atom::value,
             fmt::format("the job goes on from step {}", version));
}

// Spawns every training actor again (on the surviving nodes) and restores
// them to checkpoint `version` once all are there. Answers for an older
// rollback (`gen`) are dropped.
void respawn_all(self_ptr self, std::int64_t gen, std::int64_t version,
                 std::shared_ptr<const std::vector<shard_state_msg>> states,
                 std::optional<clock_type::time_point> detected) {
  auto& st = self->state;
  auto& t = st.topo;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < t.data_shards.size(); ++i)
    names.push_back(fmt::format("data_shard:{}", i));
  for (std::size_t i = 0; i < t.param_shards.size(); ++i)
    names.push_back(fmt::format("param_shard:{}", i));
  for (std::size_t i = 0; i < t.aggregators.size(); ++i)
    names.push_back(fmt::format("aggregator:{}", i));
  for (std::size_t i = 0; i < t.workers.size(); ++i)
    names.push_back(fmt::format("worker:{}", i));
  const bool evaluator_new = !st.spec.test.empty() && !t.evaluator;
  if (evaluator_new)
    names.push_back("evaluator");
  auto left = std::make_shared<std::size_t>(names.size());
  for (const auto& name : names)
    respawn(self, name, [=](caf::actor h) {
      auto& st = self->state;
      if (stale(self, gen) || st.finished) {
        self->send_exit(h, caf::exit_reason::user_shutdown);
        return;
      }
      *slot_of(st.topo, parse_actor_id(name)) = h;
      st.topo.names[h.address()] = name;
      self->monitor(h);
      if (--*left == 0)
        restore_all(self, version, *states, detected, evaluator_new);
    });
}

// Asks the store for the newest good checkpoint; reports the files it
// refused and hands the checkpoint (version, states) to `then`, unless the
// job rolled back again meanwhile (`gen`) or ended.
void with_checkpoint(
    self_ptr self, std::int64_t gen, const char* what,
    std::function<void(std::int64_t, std::vector<shard_state_msg>&)> then) {
  auto& st = self->state;
  self->request(st.store, std::chrono::seconds(60), checkpoint_atom::value)
      .then(
          [=](std::int64_t version, std::vector<shard_state_msg>& states,
              std::vector<std::string>& problems) {
            auto& st = self->state;
            if (stale(self, gen) || st.finished)
              return;
            for (auto& p : problems)
              self->send(st.listener, info_atom::value,
                         fmt::format("snapshot refused, falling back to an "
                                     "older checkpoint: {}",
                                     p));
            then(version, states);
          },
          [=](caf::error& err) {
            fail(self, fmt::format("{}: the snapshot store did not answer: {}",
                                   what, self->system().render(err)));
          });
}

// Rolls the whole job back to its newest checkpoint (the newest version
// every param shard has a good snapshot of): every training actor is
// spawned again, a lost node's on the surviving nodes, and training goes
// on from there. Sync training is deterministic, so the job ends with the
// bits it would have had; the steps since the checkpoint are done twice.
void rollback(self_ptr self, const std::string& why) {
  auto& st = self->state;
  const auto gen = ++st.generation;
  const auto detected = clock_type::now();
  st.rolling = true;
  ++st.result.rollbacks;
  stop_training_actors(self);
  self->send(
      st.listener, info_atom::value,
      fmt::format("{}: rolling the job back to its newest checkpoint", why));
  with_checkpoint(
      self, gen, "rolling back",
      [=](std::int64_t version, std::vector<shard_state_msg>& states) {
        respawn_all(self, gen, version,
                    std::make_shared<const std::vector<shard_state_msg>>(
                        std::move(states)),
                    detected);
      });
}

void node_lost(self_ptr self, std::size_t n, const std::string& why) {
  auto& st = self->state;
  if (st.finished)
    return;
  const auto node = st.topo.node_names[n];
  if (!st.lost_nodes.insert(node).second)
    return; // known already
  st.result.lost_nodes.push_back(node);
  if (auto f = st.faulted.find(node); f != st.faulted.end())
    st.result.fault_detection_ms.push_back(
        std::chrono::duration<double, std::milli>(clock_type::now() - f->second)
            .count());
  if (!st.started) {
    fail(self, fmt::format("node {} was lost during start-up: {}", node, why));
    return;
  }
  if (st.lost_nodes.size() == st.topo.node_names.size()) {
    fail(self, fmt::format("node {} was lost ({}), and it was the last node "
                           "of the job",
                           node, why));
    return;
  }
  // Nobody waits on its data-plane connections any more (a frozen node
  // does not read them: senders would block until their timeout).
  const auto key = runtime::bulk_key(st.topo.managers[n].node());
  if (auto plane = runtime::process_bulk_plane())
    plane->forget_peer(key);
  for (std::size_t m = 0; m < st.topo.managers.size(); ++m)
    if (m != n && st.lost_nodes.count(st.topo.node_names[m]) == 0)
      self->send(st.topo.managers[m], runtime::forget_atom::value, key);
  // Its actors are restarted elsewhere: they count as restarts.
  for (const auto& [actor, where] : st.topo.placement)
    if (where == node) {
      ++st.result.restarts;
      ++st.result.restarts_by_role[role_of(actor)];
    }
  rollback(self, fmt::format("node {} lost ({})", node, why));
}

void on_down(self_ptr self, caf::down_msg& dm) {
  auto& st = self->state;
  if (st.finished)
    return;
  const auto why = dm.reason ? self->system().render(dm.reason)
                             : std::string("exited normally");
  auto manager = st.manager_of.find(dm.source);
  if (manager != st.manager_of.end()) {
    node_lost(self, manager->second,
              fmt::format("its node manager stopped: {}", why));
    return;
  }
  auto it = st.topo.names.find(dm.source);
  if (it == st.topo.names.end())
    return; // replaced already, or stopped by us to be restarted
  const auto name = it->second;
  st.topo.names.erase(it);
  auto node = st.topo.placement.find(name);
  const auto where =
      node != st.topo.placement.end() ? " on node " + node->second : "";
  if (!st.started) {
    fail(self,
         fmt::format("{}{} stopped during start-up: {}", name, where, why));
    return;
  }
  if (dm.reason == caf::exit_reason::remote_link_unreachable &&
      node != st.topo.placement.end()) {
    // The node is gone (killed, or silent past the heartbeat timeout),
    // with every actor on it.
    const auto& names = st.topo.node_names;
    const auto n = static_cast<std::size_t>(
        std::find(names.begin(), names.end(), node->second) - names.begin());
    if (n < names.size()) {
      node_lost(self, n, fmt::format("{} stopped: {}", name, why));
      return;
    }
  }
  // Escalation: too many restarts of this role within the window.
  const std::string role_name = role_of(name);
  const auto now = clock_type::now();
  auto& times = st.restart_times[role_name];
  const auto window = std::chrono::duration<double>(st.spec.within_s);
  while (!times.empty() && now - times.front() > window)
    times.pop_front();
  if (static_cast<std::int64_t>(times.size()) >= st.spec.max_restarts) {
    fail(self, fmt::format(
                   "supervision gave up: {}{} failed ({}) after {} restart(s) "
                   "of role {} within {} s (supervision.max_restarts = {}); "
                   "last good checkpoint: {}",
                   name, where, why, times.size(), role_name, st.spec.within_s,
                   st.spec.max_restarts, last_checkpoint(st)));
    return;
  }
  if (st.rolling || !st.recovering.empty()) {
    // A second failure while one recovery is under way: the peers the
    // first recovery counts on may be the ones gone. Go back to a state
    // that holds for all instead.
    times.push_back(now);
    ++st.result.restarts;
    ++st.result.restarts_by_role[role_name];
    rollback(self, fmt::format("{}{} failed ({}) during a recovery", name,
                               where, why));
    return;
  }
  self->send(st.listener, info_atom::value,
             fmt::format("{}{} failed ({}); restarting ({})", name, where, why,
                         st.spec.strategy));
  st.recovering.push_back({now, slowest_steps(st)});
  for (const auto& target : restart_set(st, name)) {
    if (target != name) {
      auto* a = slot_of(st.topo, parse_actor_id(target));
      if (a == nullptr || !*a)
        continue;
      st.topo.names.erase(a->address());
      self->send_exit(*a, caf::exit_reason::user_shutdown);
    }
    times.push_back(now);
    ++st.result.restarts;
    ++st.result.restarts_by_role[role_of(target)];
    respawn(self, target);
  }
}

// Kills or freezes the node's process ([[chaos]], troupe kill --node):
// "" when done, else why not.
std::string fault_node(self_ptr self, const std::string& node,
                       const std::string& action) {
  auto& st = self->state;
  const auto& names = st.topo.node_names;
  const auto n = static_cast<std::size_t>(
      std::find(names.begin(), names.end(), node) - names.begin());
  if (st.topo.managers.empty())
    return "this job runs in one process: it has no node to kill";
  if (n >= names.size() || n >= st.topo.managers.size())
    return fmt::format("no node {} in this job (nodes: {})", node,
                       fmt::join(names, ", "));
  if (st.lost_nodes.count(node) > 0)
    return fmt::format("node {} was lost already", node);
  self->send(st.listener, info_atom::value,
             fmt::format("fault injected: {} node {}", action, node));
  st.faulted[node] = clock_type::now();
  self->send(st.topo.managers[n], runtime::fault_atom::value, action);
  return "";
}

// --resume: the job goes on from the newest checkpoint in the checkpoint
// directory (from the start when there is none).
void resume(self_ptr self) {
  auto& st = self->state;
  const auto gen = ++st.generation;
  st.rolling = true;
  with_checkpoint(
      self, gen, "resuming",
      [=](std::int64_t version, std::vector<shard_state_msg>& states) {
        auto& st = self->state;
        if (version == 0) {
          st.rolling = false;
          self->send(st.listener, info_atom::value,
                     fmt::format("no checkpoint in {}: starting from "
                                 "step 0",
                                 st.snap.dir));
          for (auto& w : st.topo.workers)
            self->send(w, start_atom::value);
          return;
        }
        st.result.resumed_from = version;
        st.ledger.resumed(version);
        self->send(st.listener, info_atom::value,
                   fmt::format("resuming from the checkpoint at step {} "
                               "in {}",
                               version, st.snap.dir));
        // Epochs before the checkpoint's were reported by the job that
        // wrote it.
        st.emitted_epochs = version / st.spec.versions_per_epoch();
        if (st.emitted_epochs >= st.spec.epochs) {
          // The checkpoint is the end of this job (a finished run keeps its
          // final state): nothing is left to train. Its parameters are the
          // result; its figures were reported by the run that wrote it.
          self->send(st.listener, info_atom::value,
                     fmt::format("the checkpoint holds the end of this job "
                                 "({} epoch(s)): nothing left to train; raise "
                                 "job.epochs to train further",
                                 st.spec.epochs));
          st.rolling = false;
          st.final_on_disk = true;
          st.t_train_end = st.t_start; // no training time
          for (const auto& s : states) {
            params_msg p;
            p.offset = st.spec.shard_begin(s.shard, st.param_count);
            p.values = s.params;
            st.final.add(p, st.param_count);
            st.applied[s.shard] = 0;
          }
          maybe_finish(self);
          return;
        }
        stop_training_actors(self);
        respawn_all(self, gen, version,
                    std::make_shared<const std::vector<shard_state_msg>>(
                        std::move(states)),
                    std::nullopt);
      });
}

// Removes base/troupe-snapshots-PID-* of processes that no longer exist.
void remove_orphaned_snapshot_dirs(const std::string& base) {
  const std::string prefix = "troupe-snapshots-";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
    const auto name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0)
      continue;
    const auto dash = name.find('-', prefix.size());
    const auto pid_text = name.substr(prefix.size(), dash - prefix.size());
    if (dash == std::string::npos || pid_text.empty() ||
        pid_text.find_first_not_of("0123456789") != std::string::npos ||
        pid_text.size() > 9)
      continue;
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH)
      std::filesystem::remove_all(e.path(), ec);
  }
}

job_status status_of(coordinator_state& st) {
  job_status s;
  s.job = st.spec.name;
  s.mode = st.spec.mode;
  s.state = !st.started ? "starting" : st.finished ? "finished" : "training";
  s.nodes = st.topo.node_names;
  s.node_devices = st.topo.node_devices;
  s.placement = st.topo.placement;
  s.worker_devices = st.spec.worker_devices;
  s.lost_nodes = st.result.lost_nodes;
  s.step = std::max<std::int64_t>(0, st.reported_steps);
  s.steps = st.spec.total_steps();
  s.loss = st.recent_loss;
  if (st.started) {
    s.wall_s =
        std::chrono::duration<double>(clock_type::now() - st.t_start).count();
    if (s.wall_s > 0)
      s.samples_per_s = static_cast<double>(s.step * st.spec.batch) / s.wall_s;
  }
  return s;
}

caf::behavior coordinator(self_ptr self, job_spec spec, caf::actor listener,
                          topology topo, snapshot_options snap) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.listener = std::move(listener);
  st.topo = std::move(topo);
  st.snap = std::move(snap);
  st.steps_done.assign(static_cast<std::size_t>(st.spec.workers), 0);
  st.first_step.assign(static_cast<std::size_t>(st.spec.workers), 0);
  st.counted.assign(static_cast<std::size_t>(st.spec.workers),
                    std::vector<bool>(static_cast<std::size_t>(
                        std::max<std::int64_t>(0, st.spec.total_steps()))));
  st.pushed.assign(static_cast<std::size_t>(st.spec.workers), 0);
  st.chaos_done.assign(st.spec.chaos.size(), false);
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  st.param_count = devices::nn::param_count(
      devices::nn::param_layout(st.spec.model_input(), st.spec.layers));
  st.ledger = checkpoint_ledger(static_cast<std::int32_t>(st.spec.partitions),
                                static_cast<std::int32_t>(st.spec.workers),
                                st.spec.synchronous());
  if (st.snap.dir.empty()) {
    // Snapshots live in a directory of this job's own, removed at the end.
    // Its name carries this process's id: those of jobs killed before they
    // could remove theirs (SIGKILL) are removed here.
    const auto base = std::filesystem::temp_directory_path().string();
    remove_orphaned_snapshot_dirs(base);
    std::string tmpl =
        fmt::format("{}/troupe-snapshots-{}-XXXXXX", base, ::getpid());
    const char* made = ::mkdtemp(tmpl.data());
    st.snap.dir = made != nullptr ? made : base;
    st.snap.keep = made == nullptr;
  }
  st.snap.shards = static_cast<std::int32_t>(st.spec.partitions);
  st.store =
      spawn_snapshot_store(self, st.snap, caf::actor_cast<caf::actor>(self));
  auto& t = st.topo;
  for (auto* v : {&t.data_shards, &t.param_shards, &t.aggregators, &t.workers})
    for (auto& a : *v)
      self->monitor(a);
  if (t.evaluator)
    self->monitor(t.evaluator);
  for (std::size_t n = 0; n < t.managers.size(); ++n) {
    st.manager_of[t.managers[n].address()] = n;
    self->monitor(t.managers[n]);
  }
  st.expected_ready = st.spec.workers + (t.evaluator ? 1 : 0);
  wire(self);
  // Start-up is bounded: name whoever is not ready in time.
  self->delayed_send(self, std::chrono::seconds(60), start_atom::value);
  return {
      [=](start_atom) {
        auto& st = self->state;
        if (st.started || st.finished)
          return;
        std::vector<std::string> missing;
        for (std::size_t r = 0; r < st.topo.workers.size(); ++r) {
          auto name = fmt::format("worker:{}", r);
          if (st.ready_names.count(name) == 0)
            missing.push_back(name + " on " + st.topo.placement[name]);
        }
        if (st.topo.evaluator && st.ready_names.count("evaluator") == 0)
          missing.push_back("evaluator on " + st.topo.placement["evaluator"]);
        fail(self, fmt::format("not ready 60 s after start-up: {}",
                               fmt::join(missing, ", ")));
      },
      [=](ready_atom, const std::string& role_text, std::int32_t index) {
        auto& st = self->state;
        const auto kind = role_named(role_text);
        if (!kind)
          return;
        st.ready_names.insert(to_string(actor_id{*kind, index}));
        if (st.started || static_cast<std::int64_t>(st.ready_names.size()) <
                              st.expected_ready)
          return;
        st.started = true;
        self->send(st.listener, info_atom::value,
                   fmt::format("training: {} worker(s), {} param shard(s), {} "
                               "data shard(s) on {} node(s), mode {}, {} steps",
                               st.spec.workers, st.spec.partitions,
                               st.spec.shards, st.topo.nodes, st.spec.mode,
                               st.spec.total_steps()));
        st.t_start = clock_type::now();
        if (st.snap.resume)
          resume(self);
        else
          for (auto& w : st.topo.workers)
            self->send(w, start_atom::value);
      },
      [=](progress_msg& p) {
        auto& st = self->state;
        const auto w = static_cast<std::size_t>(p.worker);
        if (w >= st.steps_done.size() || p.losses.size() != p.samples.size())
          return;
        // From an incarnation stopped since (its last words): its losses
        // count, its position does not.
        if (p.incarnation ==
            st.incarnation[fmt::format("worker:{}", p.worker)]) {
          st.steps_done[w] = p.steps_done;
          st.pushed[w] = p.pushed;
        }
        st.max_lead = std::max(st.max_lead, p.max_lead);
        st.compute_s += p.compute_s;
        st.grad_buffers = std::max(st.grad_buffers, p.grad_buffers);
        st.wait_s += p.wait_s;
        // Steps done again (after a restart or a rollback) count once.
        auto& counted = st.counted[w];
        const auto per_epoch = st.spec.steps_per_epoch;
        double recent = 0;
        std::int64_t recent_n = 0;
        std::optional<std::int64_t> finished_epoch;
        for (std::size_t i = 0; i < p.losses.size(); ++i) {
          const auto step = p.first_step + static_cast<std::int64_t>(i);
          if (step < 0 || step >= static_cast<std::int64_t>(counted.size()) ||
              counted[static_cast<std::size_t>(step)])
            continue;
          counted[static_cast<std::size_t>(step)] = true;
          auto& acc = st.epochs[step / per_epoch];
          acc.loss_sum += p.losses[i];
          acc.samples += p.samples[i];
          recent += p.losses[i];
          recent_n += p.samples[i];
          if ((step + 1) % per_epoch == 0 &&
              ++acc.workers_done == st.spec.workers) {
            acc.train_done = true;
            acc.end = clock_type::now();
            finished_epoch = step / per_epoch;
          }
        }
        if (recent_n > 0)
          st.recent_loss = recent / static_cast<double>(recent_n);
        const auto slowest =
            *std::min_element(st.steps_done.begin(), st.steps_done.end());
        // Training went on past each failure: that recovery is over.
        for (auto it = st.recovering.begin(); it != st.recovering.end();) {
          if (slowest > it->slowest) {
            st.result.recovery_ms.push_back(
                std::chrono::duration<double, std::milli>(clock_type::now() -
                                                          it->detected)
                    .count());
            it = st.recovering.erase(it);
          } else {
            ++it;
          }
        }
        for (std::size_t i = 0; i < st.spec.chaos.size(); ++i) {
          const auto& e = st.spec.chaos[i];
          if (e.role == "node" && !st.chaos_done[i] && slowest >= e.at_step) {
            st.chaos_done[i] = true;
            fault_node(self, e.node, e.action);
          }
        }
        if (slowest != st.reported_steps) {
          st.reported_steps = slowest;
          self->send(st.listener, progress_atom::value, slowest,
                     st.spec.total_steps(), st.recent_loss);
        }
        if (finished_epoch)
          emit_epochs(self);
      },
      [=](eval_msg& e) {
        auto& st = self->state;
        st.epochs[e.epoch - 1].eval = e;
        if (st.spec.patience > 0) {
          auto m = st.milestones.find(e.epoch);
          if (m != st.milestones.end())
            st.epoch_params[e.epoch] = m->second.values;
        }
        st.milestones.erase(e.epoch);
        emit_epochs(self);
      },
      [=](status_atom) { return status_of(self->state); },
      [=](kill_atom, const std::string& target) -> std::string {
        // `troupe kill`: the actor dies as a crash would, and supervision
        // takes over.
        auto& st = self->state;
        if (target.rfind("node:", 0) == 0) {
          if (!st.started || st.finished)
            return fmt::format("the job is {}: nothing is killed",
                               st.finished ? "over" : "starting");
          return fault_node(self, target.substr(5), "kill");
        }
        const auto name = target == "evaluator:0" ? "evaluator" : target;
        for (const auto& [addr, n] : st.topo.names)
          if (n == name) {
            auto* a = slot_of(st.topo, parse_actor_id(name));
            if (a == nullptr || !*a)
              break;
            if (!st.started || st.finished)
              return fmt::format("the job is {}: nothing is killed",
                                 st.finished ? "over" : "starting");
            self->send_exit(*a, caf::exit_reason::kill);
            return "";
          }
        std::vector<std::string> known;
        for (const auto& [addr, n] : st.topo.names)
          known.push_back(n);
        std::sort(known.begin(), known.end());
        return fmt::format("no actor {} in this job (actors: {})", target,
                           fmt::join(known, ", "));
      },
      [=](params_msg& p) {
        // From every param shard: each epoch's parameters (tag = epoch) for
        // the evaluator, and the final ones (tag -1). A restarted shard may
        // send a piece again: each element counts once.
        auto& st = self->state;
        const auto n = p.values.numel();
        if (p.offset < 0 || n <= 0 || p.offset + n > st.param_count)
          return;
        if (p.tag == -1) {
          if (st.final.add(p, st.param_count)) {
            st.t_train_end = clock_type::now();
            maybe_finish(self);
          }
          return;
        }
        auto e = st.epochs.find(p.tag - 1);
        if (e != st.epochs.end() && e->second.eval)
          return; // evaluated already
        if (st.milestones[p.tag].add(p, st.param_count))
          send_milestone(self, p.tag);
      },
      [=](snapshot_atom, shard_state_msg& m) {
        auto& st = self->state;
        st.ledger.add_ledger(m.shard, m.version, m.ledger);
        const auto offset = st.spec.shard_begin(m.shard, st.param_count);
        self->send(st.store, snapshot_atom::value, std::move(m), offset,
                   st.param_count);
      },
      [=](clip_atom, std::int64_t step, std::int32_t shard,
          std::vector<double>& sums) {
        // optimizer.clip_norm: the global norm of step `step`'s gradient,
        // summed over the shards' segments in model order, and the scale
        // torch.nn.utils.clip_grad_norm_ would apply.
        auto& st = self->state;
        if (shard < 0 || shard >= st.spec.partitions)
          return;
        auto send_scale = [&](std::int32_t to, float scale) {
          self->send(st.topo.param_shards[static_cast<std::size_t>(to)],
                     clip_atom::value, step, scale);
        };
        if (auto known = st.clip_scales.find(step);
            known != st.clip_scales.end()) {
          send_scale(shard, known->second); // a replay
          return;
        }
        auto& parts = st.clip_parts[step];
        parts[shard] = std::move(sums);
        if (static_cast<std::int64_t>(parts.size()) < st.spec.partitions)
          return;
        double total = 0;
        for (const auto& [s, v] : parts)
          for (double x : v)
            total += x;
        const double norm = std::sqrt(total);
        const auto scale = static_cast<float>(
            norm > st.spec.clip_norm ? st.spec.clip_norm / (norm + 1e-6) : 1.0);
        st.clip_scales[step] = scale;
        st.clip_parts.erase(step);
        for (std::int32_t s = 0; s < st.spec.partitions; ++s)
          send_scale(s, scale);
        // Scales older than every shard's older snapshot are not replayed.
        const auto oldest = std::min(step, st.ledger.oldest_kept());
        st.clip_scales.erase(
            st.clip_scales.begin(),
            st.clip_scales.lower_bound(oldest - 2 * st.spec.snapshot_every));
      },
      [=](snapshot_atom, failed_atom, std::int32_t shard, std::int64_t version,
          const std::string& why) {
        // A snapshot that could not be written (a full disk): training goes
        // on; recovery uses the newest checkpoint that was kept. Said once
        // per run of failures.
        auto& st = self->state;
        if (st.snapshot_failures++ == 0)
          self->send(st.listener, info_atom::value,
                     fmt::format("warning: param_shard:{}'s snapshot of step "
                                 "{} was not written: {}; training goes on, "
                                 "and a failure now goes back to the newest "
                                 "checkpoint kept ({})",
                                 shard, version, why, last_checkpoint(st)));
        if (st.final_requested && !st.final_given_up && !st.finished) {
          st.final_given_up = true;
          self->send(st.listener, info_atom::value,
                     fmt::format("the final checkpoint was not written; the "
                                 "newest is {}",
                                 last_checkpoint(st)));
          maybe_finish(self);
        }
      },
      [=](durable_atom, std::int32_t shard, std::int64_t version) {
        auto& st = self->state;
        if (st.snapshot_failures > 0) {
          self->send(st.listener, info_atom::value,
                     fmt::format("snapshots are written again ({} were not)",
                                 st.snapshot_failures));
          st.snapshot_failures = 0;
        }
        on_durable(self, shard, version);
        if (self->state.final_requested)
          maybe_finish(self);
      },
      [=](snapshot_atom, done_atom, std::int64_t gen) {
        // The final checkpoint's deadline.
        auto& st = self->state;
        if (stale(self, gen) || st.finished)
          return;
        st.final_given_up = true;
        self->send(st.listener, info_atom::value,
                   fmt::format("the final checkpoint was not written in 60 "
                               "s; the newest is {}",
                               last_checkpoint(st)));
        maybe_finish(self);
      },
      [=](duplicate_atom, std::int32_t, std::int32_t, std::int64_t) {
        ++self->state.result.duplicates_dropped;
      },
      [=](applied_atom, std::int32_t shard, std::int64_t gradients) {
        self->state.applied[shard] = gradients;
        maybe_finish(self);
      },
  };
}

} // namespace

void register_coordinator(caf::actor_system_config& cfg) {
  cfg.add_actor_type("coordinator", coordinator);
}

} // namespace troupe::actors

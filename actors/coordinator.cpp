// coordinator: one per job, in the driver's process. Wires the actors the
// driver placed, starts training when every worker and the evaluator are
// ready, turns worker progress and evaluations into epoch summaries for its
// listener, answers `troupe status` and `troupe kill`, and ends the job
// with the digest of the final parameters.
//
// It runs the job's supervisor (supervisor.hpp) and answers it through
// supervised_job; snapshots and the final checkpoint are job_checkpoints';
// the figures are epoch_accounting's (epochs.hpp).
#include "actors/checkpointing.hpp"
#include "actors/clip_norm.hpp"
#include "actors/control.hpp"
#include "actors/epochs.hpp"
#include "actors/history.hpp"
#include "actors/protocol.hpp"
#include "actors/supervisor.hpp"
#include "actors/update_rule.hpp"
#include "actors/wiring.hpp"

#include "devices/nn/layers.hpp"
#include "devices/nn/ranges.hpp"
#include "runtime/digest.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

using clock_type = std::chrono::steady_clock;

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

struct coordinator_state;
using self_ptr = caf::stateful_actor<coordinator_state>*;

// What the supervisor asks of the coordinator.
class coordinator_job final : public supervised_job {
public:
  explicit coordinator_job(self_ptr self)
    : self_(self) {}
  bool started() const override;
  bool finished() const override;
  void fail(std::string why) override;
  void info(std::string line) override;
  void event(job_event e) override;
  std::int64_t slowest_steps() const override;
  void workers_at(const std::vector<std::int64_t>& steps) override;
  void evaluator_restarted() override;
  bool resumed_at(std::int64_t version,
                  const std::vector<shard_state_msg>& states) override;
  std::string last_checkpoint() const override;

private:
  self_ptr self_;
};

struct coordinator_state {
  job_spec spec;
  caf::actor listener;
  topology topo;
  std::int64_t param_count = 0;
  std::set<std::string> ready_names;
  bool started = false;
  bool finished = false;
  clock_type::time_point t_start;
  clock_type::time_point t_train_end;
  std::int64_t reported_steps = -1;
  parameters final;
  // Each epoch's parameters, complete or not, until evaluated.
  std::map<std::int64_t, parameters> milestones;
  std::map<std::int32_t, std::int64_t> applied; // async/ssp: shard -> ledger
  bool stopped_early = false;
  run_result result;
  std::optional<epoch_accounting> epochs;
  clock_type::time_point t_created = clock_type::now(); // history's clock
  history_recorder history;
  std::optional<early_stopping> patience;
  std::optional<job_control> control; // [controller]
  std::optional<clip_norm_scales> clip;
  std::optional<job_checkpoints> checkpoints;
  std::optional<coordinator_job> job;
  std::optional<supervisor> sup;
};

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
  stop(t.stages);
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

void info(self_ptr self, std::string line) {
  self->send(self->state.listener, info_atom::value, std::move(line));
}

double since_created(const coordinator_state& st) {
  return std::chrono::duration<double>(clock_type::now() - st.t_created)
      .count();
}

job_status status_of(const coordinator_state& st);

// The nodes and actors, to the listener: at the start and after a fault.
void push_status(self_ptr self) {
  self->send(self->state.listener, status_atom::value, status_of(self->state));
}

// An event: recorded, then to the listener with the status after it.
void announce(self_ptr self, job_event e) {
  e.t = since_created(self->state);
  self->state.history.event(e);
  self->send(self->state.listener, event_atom::value, std::move(e));
  push_status(self);
}

// The result of a job that ran to its end (or stopped early).
void fill_result(coordinator_state& st) {
  auto& r = st.result;
  const auto& acc = *st.epochs;
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
  const auto workers = static_cast<double>(st.spec.workers);
  r.max_lead = acc.max_lead();
  r.worker_compute_s = acc.compute_s() / workers;
  r.gradient_buffers = acc.gradient_buffers();
  r.worker_wait_s = acc.wait_s() / workers;
  r.gradients_pushed = acc.pushed();
  if (!st.applied.empty()) {
    r.gradients_applied = st.applied.begin()->second;
    for (const auto& [shard, n] : st.applied)
      r.gradients_applied = std::min(r.gradients_applied, n);
  }
  const epoch_summary* figures =
      r.history.empty() ? nullptr : &r.history.back();
  r.stopped_early = st.stopped_early;
  if (st.patience && st.patience->best_epoch() > 0 &&
      (!st.control || st.control->stop_after() == 0)) {
    r.best_epoch = st.patience->best_epoch();
    for (const auto& e : r.history)
      if (e.epoch == r.best_epoch)
        figures = &e;
  }
  if (figures != nullptr && figures->evaluated) {
    r.test_loss = figures->test_loss;
    r.test_accuracy = figures->test_accuracy;
    r.test_metrics = figures->metrics;
  }
}

// Ends the job once every epoch is reported (or it stopped early), the
// final parameters are complete, async/ssp shards reported their ledgers,
// and the final checkpoint (when asked for) is on disk.
void maybe_finish(self_ptr self) {
  auto& st = self->state;
  if (st.finished || !st.final.complete(st.param_count) ||
      (!st.stopped_early &&
       (st.epochs->reported() < st.spec.epochs ||
        (!update_rule(st.spec).sums_workers() &&
         static_cast<std::int64_t>(st.applied.size()) < st.spec.partitions))) ||
      !st.checkpoints->final_written(
          st.topo.param_shards, st.sup->generation(),
          [self](std::int64_t gen) { return self->state.sup->stale(gen); },
          [self] { maybe_finish(self); }))
    return;
  st.finished = true;
  fill_result(st);
  self->send(st.listener, done_atom::value, st.result);
  shutdown(self, caf::exit_reason::normal);
}

// job.patience: the result holds the best epoch's parameters, whether the
// job stops after epoch s or ran to its last. Returns true when it stopped.
bool watch_epoch(self_ptr self, const epoch_summary& s) {
  auto& st = self->state;
  const auto verdict = st.patience->judge(s);
  if (verdict == early_stopping::verdict::go_on)
    return false;
  st.final = parameters{};
  params_msg whole;
  whole.values = st.patience->best_params();
  st.final.add(whole, st.param_count);
  if (verdict == early_stopping::verdict::keep_best)
    return false; // maybe_finish ends it as usual
  st.stopped_early = true;
  st.checkpoints->final_not_needed();
  job_event e;
  e.kind = "early_stop";
  e.step = st.epochs->slowest();
  e.message = fmt::format("early stopping: {} epoch(s) without a better {} "
                          "than epoch {}'s {:.6g}; stopping after epoch {} and "
                          "keeping epoch {}'s parameters",
                          st.spec.patience, st.spec.monitor,
                          st.patience->best_epoch(), st.patience->best_value(),
                          s.epoch, st.patience->best_epoch());
  announce(self, std::move(e));
  maybe_finish(self);
  return true;
}

// A controller's stop: the result is the stop epoch's parameters, once
// they are here.
void finish_stopped(self_ptr self) {
  auto& st = self->state;
  const auto* kept = st.control ? st.control->stopped_params() : nullptr;
  if (kept == nullptr)
    return;
  st.final = parameters{};
  params_msg whole;
  whole.values = *kept;
  st.final.add(whole, st.param_count);
  st.t_train_end = clock_type::now();
  maybe_finish(self);
}

// The lr scales decided so far (none without a controller).
const std::vector<double>& decided(const coordinator_state& st) {
  static const std::vector<double> none;
  return st.control ? st.control->decided() : none;
}

// What the controller did besides deciding: its restarts are counted and
// its events told. False when it failed for good (the job fails).
bool settle(self_ptr self, job_control::outcome& out) {
  auto& st = self->state;
  st.result.restarts += out.restarts;
  if (out.restarts > 0) {
    st.result.restarts_by_role["controller"] += out.restarts;
    st.result.restarts_by_actor["controller"] += out.restarts;
  }
  for (auto& e : out.events)
    announce(self, std::move(e));
  if (out.error.empty())
    return true;
  fail(self, std::move(out.error));
  return false;
}

// The controller judges epoch s. Returns true when it stopped the job.
bool control_epoch(self_ptr self, const epoch_summary& s) {
  auto& st = self->state;
  auto out = st.control->judge(s);
  if (!settle(self, out))
    return true;
  if (out.tell_shards)
    for (std::size_t p = 0; p < st.topo.param_shards.size(); ++p)
      tell(self, param_shard_at(st.topo, p), control_atom::value,
           st.control->decided());
  if (out.checkpoint)
    self->send(st.listener, keep_model_atom::value, s.epoch,
               std::move(*out.checkpoint), out.reason);
  if (!out.stop)
    return false;
  st.stopped_early = true;
  st.checkpoints->final_not_needed();
  finish_stopped(self);
  return true;
}

// Reports every epoch that is trained and evaluated, in order.
void emit_epochs(self_ptr self) {
  auto& st = self->state;
  while (auto s = st.epochs->next(static_cast<bool>(st.topo.evaluator))) {
    s->lr = st.spec.lr_at(s->steps, decided(st));
    st.result.history.push_back(*s);
    st.history.epoch(point_of(*s, since_created(st)));
    self->send(st.listener, epoch_atom::value, *s);
    if (st.patience && s->evaluated && watch_epoch(self, *s))
      return; // stopped early
    if (st.control && control_epoch(self, *s))
      return; // stopped by the controller
  }
  maybe_finish(self);
}

// An epoch's parameters, complete: to the evaluator (kept until evaluated).
void send_milestone(self_ptr self, std::int64_t epoch) {
  auto& st = self->state;
  if (!st.topo.evaluator)
    return;
  params_msg m;
  m.tag = epoch;
  m.values = st.milestones[epoch].values;
  send_slices(self, evaluator_of(st.topo), std::move(m));
}

bool coordinator_job::started() const {
  return self_->state.started;
}

bool coordinator_job::finished() const {
  return self_->state.finished;
}

void coordinator_job::fail(std::string why) {
  actors::fail(self_, std::move(why));
}

void coordinator_job::info(std::string line) {
  actors::info(self_, std::move(line));
}

void coordinator_job::event(job_event e) {
  announce(self_, std::move(e));
}

std::int64_t coordinator_job::slowest_steps() const {
  return self_->state.epochs->slowest();
}

void coordinator_job::workers_at(const std::vector<std::int64_t>& steps) {
  self_->state.epochs->workers_at(steps);
}

void coordinator_job::evaluator_restarted() {
  auto& st = self_->state;
  for (auto& [epoch, params] : st.milestones)
    if (params.complete(st.param_count))
      send_milestone(self_, epoch);
}

bool coordinator_job::resumed_at(std::int64_t version,
                                 const std::vector<shard_state_msg>& states) {
  auto& st = self_->state;
  const auto& dir = st.checkpoints->options().dir;
  if (version == 0) {
    info(fmt::format("no checkpoint in {}: starting from step 0", dir));
    return false;
  }
  info(fmt::format("resuming from the checkpoint at step {} in {}", version,
                   dir));
  // Epochs before the checkpoint's were reported by the job that wrote it.
  st.epochs->resumed(version / st.spec.versions_per_epoch(),
                     st.spec.step_of_version(version));
  if (st.epochs->reported() < st.spec.epochs)
    return false;
  // The checkpoint is the end of this job (a finished run keeps its final
  // state): nothing is left to train. Its parameters are the result; its
  // figures were reported by the run that wrote it.
  info(fmt::format("the checkpoint holds the end of this job ({} epoch(s)): "
                   "nothing left to train; raise job.epochs to train further",
                   st.spec.epochs));
  st.checkpoints->final_not_needed();
  st.t_train_end = st.t_start; // no training time
  for (const auto& s : states) {
    params_msg p;
    p.offset = st.spec.shard_begin(s.shard, st.param_count);
    p.values = s.params;
    st.final.add(p, st.param_count);
    st.applied[s.shard] = 0;
  }
  maybe_finish(self_);
  return true;
}

std::string coordinator_job::last_checkpoint() const {
  return self_->state.checkpoints->last();
}

job_status status_of(const coordinator_state& st) {
  job_status s;
  s.job = st.spec.name;
  s.mode = st.spec.mode;
  s.state = !st.started ? "starting" : st.finished ? "finished" : "training";
  s.nodes = st.topo.node_names;
  s.node_devices = st.topo.node_devices;
  s.placement = st.topo.placement;
  s.worker_devices = st.spec.worker_devices;
  s.lost_nodes = st.result.lost_nodes;
  s.restarts = st.result.restarts_by_actor;
  s.step = std::max<std::int64_t>(0, st.reported_steps);
  s.steps = st.spec.total_steps();
  s.epochs = st.spec.epochs;
  s.batch = st.spec.batch;
  s.loss = st.epochs->recent_loss();
  if (st.started) {
    s.wall_s =
        std::chrono::duration<double>(clock_type::now() - st.t_start).count();
    if (s.wall_s > 0)
      s.samples_per_s = static_cast<double>(s.step * st.spec.batch) / s.wall_s;
  }
  return s;
}

// Every worker and the evaluator said ready: training starts (or resumes).
void on_ready(self_ptr self, const std::string& role_text, std::int32_t index) {
  auto& st = self->state;
  const auto kind = role_named(role_text);
  if (!kind || st.started)
    return;
  st.ready_names.insert(to_string(actor_id{*kind, index}));
  const auto expected = st.spec.workers + (st.topo.evaluator ? 1 : 0);
  if (static_cast<std::int64_t>(st.ready_names.size()) < expected)
    return;
  st.started = true;
  info(self, fmt::format("training: {} worker(s), {} param shard(s), {} data "
                         "shard(s) on {} node(s), mode {}, {} steps",
                         st.spec.workers, st.spec.partitions, st.spec.shards,
                         st.topo.nodes, st.spec.mode, st.spec.total_steps()));
  st.t_start = clock_type::now();
  st.epochs->start(st.t_start);
  push_status(self);
  if (st.checkpoints->options().resume)
    st.sup->resume();
  else
    for (auto& w : st.topo.workers)
      tell(self, worker_handle{w}, start_atom::value);
}

// Start-up is bounded: names whoever is not ready 60 s after it.
void start_deadline(self_ptr self) {
  auto& st = self->state;
  if (st.started || st.finished)
    return;
  std::vector<std::string> missing;
  for (std::size_t r = 0; r < st.topo.workers.size(); ++r) {
    auto name = to_string(actor_id{role::worker, static_cast<std::int32_t>(r)});
    if (st.ready_names.count(name) == 0)
      missing.push_back(name + " on " + st.topo.placement[name]);
  }
  if (st.topo.evaluator && st.ready_names.count("evaluator") == 0)
    missing.push_back("evaluator on " + st.topo.placement["evaluator"]);
  fail(self, fmt::format("not ready 60 s after start-up: {}",
                         fmt::join(missing, ", ")));
}

void on_progress(self_ptr self, const progress_msg& p) {
  auto& st = self->state;
  const auto name =
      to_string(actor_id{role::worker, static_cast<std::int32_t>(p.worker)});
  const bool current = p.incarnation == st.sup->incarnation(name);
  const bool epoch_done = st.epochs->report(p, current, clock_type::now());
  const auto slowest = st.epochs->slowest();
  st.sup->progressed(slowest);
  if (slowest != st.reported_steps) {
    st.reported_steps = slowest;
    const auto lr = st.spec.lr_at(slowest, decided(st));
    self->send(st.listener, progress_atom::value, slowest,
               st.spec.total_steps(), st.epochs->recent_loss(), lr);
    if (slowest > 0)
      st.history.progress(
          {slowest, since_created(st), st.epochs->recent_loss(), lr});
    if (st.control && slowest > 0) {
      auto out = st.control->on_step(slowest, st.epochs->recent_loss(), lr);
      if (!settle(self, out))
        return;
    }
  }
  if (epoch_done)
    emit_epochs(self);
}

// From every param shard: each epoch's parameters (tag = epoch) for the
// evaluator, and the final ones (tag -1). A restarted shard may send a
// piece again: each element counts once.
void on_params(self_ptr self, const params_msg& p) {
  auto& st = self->state;
  if (!slice_fits(p.offset, p.values.numel(), st.param_count))
    return;
  if (p.tag == -1) {
    if (st.final.add(p, st.param_count)) {
      st.t_train_end = clock_type::now();
      maybe_finish(self);
    }
    return;
  }
  if (st.epochs->has_evaluation(p.tag) ||
      (!st.topo.evaluator && (!st.control || !st.control->wants(p.tag))))
    return; // evaluated, or judged and not stopped at
  if (!st.milestones[p.tag].add(p, st.param_count))
    return;
  if (st.topo.evaluator) {
    send_milestone(self, p.tag);
    return;
  }
  // Only the controller wants them.
  st.control->keep(p.tag, st.milestones[p.tag].values);
  st.milestones.erase(p.tag);
  finish_stopped(self);
}

caf::behavior coordinator(self_ptr self, job_spec spec, caf::actor listener,
                          topology topo, snapshot_options snap) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.listener = std::move(listener);
  st.topo = std::move(topo);
  st.param_count = devices::nn::param_count(
      devices::nn::param_layout(st.spec.model_input(), st.spec.layers));
  st.epochs.emplace(st.spec);
  if (st.spec.patience > 0)
    st.patience.emplace(st.spec);
  if (!st.spec.controller.type.empty()) {
    try {
      st.control.emplace(st.spec);
    } catch (const std::exception& e) {
      // Checked when the spec was read; a program may have changed it.
      st.control.reset();
      self->send(st.listener, failed_atom::value, std::string(e.what()));
    }
  }
  st.clip.emplace(static_cast<std::int32_t>(st.spec.partitions),
                  st.spec.clip_norm, 2 * st.spec.snapshot_every);
  st.checkpoints.emplace(self, st.spec, std::move(snap),
                         [self](std::string line) { info(self, line); });
  if (st.spec.exchange_only)
    st.checkpoints->final_not_needed();
  st.job.emplace(self);
  st.sup.emplace(self, *st.job, st.spec, st.topo, st.result,
                 st.checkpoints->ledger(), st.checkpoints->store());
  self->set_down_handler(
      [=](caf::down_msg& dm) { self->state.sup->on_down(dm); });
  st.sup->watch_all();
  wire_all(self, st.topo);
  self->delayed_send(self, std::chrono::seconds(60), start_atom::value);
  return behavior_of<coordinator_inbox>(
      [=](start_atom) { start_deadline(self); },
      [=](ready_atom, const std::string& role_text, std::int32_t index) {
        on_ready(self, role_text, index);
      },
      [=](progress_msg& p) { on_progress(self, p); },
      [=](eval_msg& e) {
        auto& st = self->state;
        st.epochs->evaluated(e);
        if (auto m = st.milestones.find(e.epoch); m != st.milestones.end()) {
          if (st.patience)
            st.patience->keep(e.epoch, m->second.values);
          if (st.control)
            st.control->keep(e.epoch, m->second.values);
        }
        st.milestones.erase(e.epoch);
        emit_epochs(self);
      },
      [=](status_atom) { return status_of(self->state); },
      [=](history_atom) {
        return self->state.history.snapshot(since_created(self->state));
      },
      [=](kill_atom, const std::string& target) -> std::string {
        auto& st = self->state;
        if (!st.started || st.finished)
          return fmt::format("the job is {}: nothing is killed",
                             st.finished ? "over" : "starting");
        return st.sup->kill(target);
      },
      [=](params_msg& p) { on_params(self, p); },
      [=](clip_atom, std::int64_t step, std::int32_t shard,
          std::vector<double>& sums) {
        auto& st = self->state;
        const auto a = st.clip->add(step, shard, std::move(sums),
                                    st.checkpoints->ledger().oldest_kept());
        if (!a)
          return;
        for (std::int32_t s = 0; s < st.spec.partitions; ++s)
          if (a->to_all || s == shard)
            tell(self, param_shard_at(st.topo, static_cast<std::size_t>(s)),
                 clip_atom::value, step, a->scale);
      },
      [=](snapshot_atom, shard_state_msg& m) {
        auto& st = self->state;
        const auto offset = st.spec.shard_begin(m.shard, st.param_count);
        st.checkpoints->taken(std::move(m), offset, st.param_count);
      },
      [=](snapshot_atom, failed_atom, std::int32_t shard, std::int64_t version,
          const std::string& why) {
        self->state.checkpoints->failed(shard, version, why);
        maybe_finish(self);
      },
      [=](durable_atom, std::int32_t shard, std::int64_t version) {
        auto& st = self->state;
        st.checkpoints->durable(st.topo, shard, version);
        maybe_finish(self);
      },
      [=](snapshot_atom, done_atom, std::int64_t gen) {
        // The final checkpoint's deadline.
        auto& st = self->state;
        if (st.sup->stale(gen) || st.finished)
          return;
        st.checkpoints->give_up_final(
            "the final checkpoint was not written in 60 s");
        maybe_finish(self);
      },
      [=](duplicate_atom, std::int32_t, std::int32_t, std::int64_t) {
        ++self->state.result.duplicates_dropped;
      },
      [=](applied_atom, std::int32_t shard, std::int64_t gradients) {
        self->state.applied[shard] = gradients;
        maybe_finish(self);
      },
      [=](control_atom, std::int32_t shard) {
        // A (restarted) param shard asks for the decisions so far.
        auto& st = self->state;
        if (shard >= 0 &&
            static_cast<std::size_t>(shard) < st.topo.param_shards.size())
          tell(self, param_shard_at(st.topo, static_cast<std::size_t>(shard)),
               control_atom::value, decided(st));
      });
}

} // namespace

void register_coordinator(caf::actor_system_config& cfg) {
  cfg.add_actor_type("coordinator", coordinator);
}

} // namespace troupe::actors

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
#include "actors/messages.hpp"

#include "devices/nn/layers.hpp"
#include "devices/nn/ranges.hpp"
#include "runtime/digest.hpp"
#include "runtime/node_protocol.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <set>

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
  clock_type::time_point t_start;
  clock_type::time_point t_train_end;
  std::vector<std::int64_t> steps_done; // by worker
  std::vector<std::int64_t> pushed;     // by worker
  std::int64_t max_lead = 0;
  double compute_s = 0; // summed over workers
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
  caf::actor store;
  std::map<std::string, std::int64_t> incarnation; // by actor name
  std::map<std::string, std::deque<clock_type::time_point>> restart_times;
  std::vector<std::vector<std::int64_t>> durable; // by shard: versions
  std::int64_t pruned = 0;                        // backups kept from here
  // The step of the latest worker restart: that worker kept no gradients
  // from before it, so a param shard can be restored only from a snapshot
  // at or after it (the shards are asked for one at once).
  std::int64_t replay_floor = 0;
  std::string floor_worker;
  struct recovery {
    clock_type::time_point detected;
    std::int64_t slowest; // the slowest worker's steps then
  };
  std::vector<recovery> recovering;
};

using self_ptr = caf::stateful_actor<coordinator_state>*;

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

void maybe_finish(self_ptr self) {
  auto& st = self->state;
  if (st.finished || !st.final.complete(st.param_count) ||
      st.emitted_epochs < st.spec.epochs)
    return;
  st.finished = true;
  auto& r = st.result;
  r.job = st.spec.name;
  r.mode = st.spec.mode;
  r.nodes = st.topo.nodes;
  r.placement = st.topo.placement;
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
  r.max_lead = st.max_lead;
  r.worker_compute_s = st.compute_s / static_cast<double>(st.spec.workers);
  r.worker_wait_s = st.wait_s / static_cast<double>(st.spec.workers);
  r.gradients_pushed =
      std::accumulate(st.pushed.begin(), st.pushed.end(), std::int64_t{0});
  if (!r.history.empty() && r.history.back().evaluated) {
    r.test_loss = r.history.back().test_loss;
    r.test_accuracy = r.history.back().test_accuracy;
  }
  self->send(st.listener, done_atom::value, r);
  shutdown(self, caf::exit_reason::normal);
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
    s.train_loss =
        acc.samples > 0 ? acc.loss_sum / static_cast<double>(acc.samples) : 0;
    const auto begin = st.emitted_epochs == 0
                           ? st.t_start
                           : st.epochs[st.emitted_epochs - 1].end;
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
    }
    st.result.history.push_back(s);
    self->send(st.listener, epoch_atom::value, s);
    ++st.emitted_epochs;
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

// A snapshot is on disk. Workers keep their gradients from the second
// newest snapshot of each shard on (a corrupt newest one falls back to it).
void on_durable(self_ptr self, std::int32_t shard, std::int64_t version) {
  auto& st = self->state;
  auto& d = st.durable[static_cast<std::size_t>(shard)];
  d.push_back(version);
  if (d.size() > 2)
    d.erase(d.begin());
  std::int64_t keep = std::numeric_limits<std::int64_t>::max();
  for (const auto& v : st.durable)
    keep = std::min(keep, v.size() < 2 ? std::int64_t{0} : v.front());
  if (keep > st.pruned) {
    st.pruned = keep;
    for (auto& w : st.topo.workers)
      self->send(w, prune_atom::value, keep);
  }
}

std::pair<std::string, std::int32_t> split_name(const std::string& name) {
  const auto colon = name.find(':');
  if (colon == std::string::npos)
    return {name, 0};
  return {name.substr(0, colon),
          static_cast<std::int32_t>(std::stol(name.substr(colon + 1)))};
}

caf::actor* slot_of(topology& t, const std::string& role, std::int32_t i) {
  auto at = [&](std::vector<caf::actor>& v) -> caf::actor* {
    return i >= 0 && static_cast<std::size_t>(i) < v.size()
               ? &v[static_cast<std::size_t>(i)]
               : nullptr;
  };
  if (role == "worker")
    return at(t.workers);
  if (role == "data_shard")
    return at(t.data_shards);
  if (role == "param_shard")
    return at(t.param_shards);
  if (role == "aggregator")
    return at(t.aggregators);
  if (role == "evaluator")
    return &t.evaluator;
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
  const auto index = split_name(name).second;
  const auto a = static_cast<std::size_t>(
      t.aggregator_of_worker[static_cast<std::size_t>(index)]);
  wire_aggregator(self, a);
  self->request(t.aggregators[a], std::chrono::seconds(1), wire_atom::value)
      .then(
          [=](bool) {
            auto& st = self->state;
            for (auto& p : st.topo.param_shards) {
              self->send(p, fetch_atom::value, step, index, h);
              self->send(p, snapshot_atom::value);
            }
            if (step >= st.replay_floor) {
              st.replay_floor = step;
              st.floor_worker = name;
            }
          },
          [=](caf::error& err) {
            if (tries > 1) {
              fetch_when_relayed(self, name, h, step, tries - 1);
              return;
            }
            fail(self, fmt::format("recovering {}: its aggregator did not "
                                   "answer: {}",
                                   name, self->system().render(err)));
          });
}

// The restarted actor `name` is `h`: wire it and its peers, and bring it
// back to where training is.
void recover(self_ptr self, const std::string& name, caf::actor h) {
  auto& st = self->state;
  auto& t = st.topo;
  const auto [role, index] = split_name(name);
  const auto i = static_cast<std::size_t>(index);
  *slot_of(t, role, index) = h;
  t.names[h.address()] = name;
  self->monitor(h);
  const auto timeout = std::chrono::seconds(30);
  if (role == "worker") {
    // Shards are at most one version apart (sync): the worker redoes the
    // oldest step any shard still waits for.
    auto versions = std::make_shared<std::vector<std::int64_t>>();
    auto left = std::make_shared<std::size_t>(t.param_shards.size());
    for (auto& p : t.param_shards)
      self->request(p, timeout, version_atom::value)
          .then(
              [=](std::int64_t v) {
                versions->push_back(v);
                if (--*left > 0)
                  return;
                const auto step =
                    *std::min_element(versions->begin(), versions->end());
                self->send(h, recover_atom::value, step);
                wire_worker(self, i);
                fetch_when_relayed(self, name, h, step, 30);
              },
              [=](caf::error& err) {
                fail(self, fmt::format("recovering {}: a param shard did not "
                                       "answer: {}",
                                       name, self->system().render(err)));
              });
  } else if (role == "data_shard") {
    for (std::size_t r = 0; r < t.workers.size(); ++r)
      if (t.data_shard_of_worker[r] == index)
        wire_worker(self, r);
  } else if (role == "aggregator") {
    wire_aggregator(self, i);
    for (std::size_t r = 0; r < t.workers.size(); ++r)
      if (t.aggregator_of_worker[r] == index)
        wire_worker(self, r);
    for (std::size_t p = 0; p < t.param_shards.size(); ++p) {
      wire_shard(self, p);
      self->send(t.param_shards[p], republish_atom::value, h);
    }
  } else if (role == "param_shard") {
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
              if (from < st.replay_floor) {
                fail(self,
                     fmt::format("cannot restore {} bit for bit: its newest "
                                 "good snapshot is version {}, but {} was "
                                 "restarted at step {} and kept no gradients "
                                 "from before it (the snapshot asked for then "
                                 "was not written yet)",
                                 name, from, st.floor_worker, st.replay_floor));
                return;
              }
              self->send(h, restore_atom::value, std::move(m));
              wire_shard(self, i);
              for (std::size_t a = 0; a < t.aggregators.size(); ++a)
                wire_aggregator(self, a);
              for (std::size_t r = 0; r < t.workers.size(); ++r) {
                wire_worker(self, r);
                self->send(t.workers[r], replay_atom::value, index, from);
              }
              self->send(self->state.listener, info_atom::value,
                         fmt::format("{} restored from version {}; the "
                                     "workers replay the steps since",
                                     name, from));
            },
            [=](caf::error& err) {
              fail(self, fmt::format("recovering {}: the snapshot store did "
                                     "not answer: {}",
                                     name, self->system().render(err)));
            });
  } else if (role == "evaluator") {
    // Shards send epoch parameters through us: they need no rewiring.
    self->send(h, wire_atom::value, caf::actor_cast<caf::actor>(self));
    for (auto& [epoch, params] : st.milestones)
      if (params.complete(st.param_count))
        send_milestone(self, epoch);
  }
}

// Spawns actor `name` again on its node, its incarnation counted.
void respawn(self_ptr self, const std::string& name) {
  auto& st = self->state;
  auto& t = st.topo;
  const auto [role, index] = split_name(name);
  auto spec = st.spec;
  spec.incarnation = ++st.incarnation[name];
  caf::message args;
  if (role == "aggregator") {
    std::int32_t lo = -1, hi = -1;
    for (std::size_t r = 0; r < t.aggregator_of_worker.size(); ++r)
      if (t.aggregator_of_worker[r] == index) {
        if (lo < 0)
          lo = static_cast<std::int32_t>(r);
        hi = static_cast<std::int32_t>(r) + 1;
      }
    args = caf::make_message(spec, index, lo, hi);
  } else if (role == "evaluator") {
    args = caf::make_message(spec);
  } else {
    args = caf::make_message(spec, index);
  }
  if (t.managers.empty()) {
    auto h = self->system().spawn<caf::actor>(role, std::move(args));
    if (!h) {
      fail(self, fmt::format("cannot restart {}: {}", name,
                             self->system().render(h.error())));
      return;
    }
    recover(self, name, *h);
    return;
  }
  const auto& node = t.placement[name];
  const auto n = static_cast<std::size_t>(
      std::find(t.node_names.begin(), t.node_names.end(), node) -
      t.node_names.begin());
  if (n >= t.managers.size()) {
    fail(self,
         fmt::format("cannot restart {}: node {} is unknown", name, node));
    return;
  }
  self->request(t.managers[n], std::chrono::seconds(30),
                runtime::spawn_atom::value, role, std::move(args))
      .then([=](caf::actor& h) { recover(self, name, std::move(h)); },
            [=](caf::error& err) {
              fail(self, fmt::format("cannot restart {} on node {}: {}", name,
                                     node, self->system().render(err)));
            });
}

// The names the strategy restarts when `name` fails: itself (one_for_one),
// every actor of its role (one_for_all), or itself and those of its role
// with a higher index (rest_for_one).
std::vector<std::string> restart_set(const coordinator_state& st,
                                     const std::string& name) {
  const auto [role, index] = split_name(name);
  if (st.spec.strategy == "one_for_one" || role == "evaluator")
    return {name};
  const auto& t = st.topo;
  const auto count = role == "worker" ? t.workers.size() : t.data_shards.size();
  std::vector<std::string> out{name};
  for (std::size_t i = 0; i < count; ++i) {
    const auto k = static_cast<std::int32_t>(i);
    if (k == index || (st.spec.strategy == "rest_for_one" && k < index))
      continue;
    out.push_back(fmt::format("{}:{}", role, k));
  }
  return out;
}

void on_down(self_ptr self, caf::down_msg& dm) {
  auto& st = self->state;
  if (st.finished)
    return;
  auto it = st.topo.names.find(dm.source);
  if (it == st.topo.names.end())
    return; // replaced already, or stopped by us to be restarted
  const auto name = it->second;
  st.topo.names.erase(it);
  auto node = st.topo.placement.find(name);
  const auto where =
      node != st.topo.placement.end() ? " on node " + node->second : "";
  const auto why = dm.reason ? self->system().render(dm.reason)
                             : std::string("exited normally");
  if (!st.started) {
    fail(self,
         fmt::format("{}{} stopped during start-up: {}", name, where, why));
    return;
  }
  if (dm.reason == caf::exit_reason::remote_link_unreachable) {
    // The node is gone with every actor on it. Respawning them on the
    // surviving nodes is not in this version: the job fails, naming it.
    fail(self, fmt::format("{}{} stopped: {} (the node was lost; moving its "
                           "actors to other nodes is not supported yet)",
                           name, where, why));
    return;
  }
  // Escalation: too many restarts of this role within the window.
  const auto role = split_name(name).first;
  const auto now = clock_type::now();
  auto& times = st.restart_times[role];
  const auto window = std::chrono::duration<double>(st.spec.within_s);
  while (!times.empty() && now - times.front() > window)
    times.pop_front();
  if (static_cast<std::int64_t>(times.size()) >= st.spec.max_restarts) {
    fail(self, fmt::format(
                   "supervision gave up: {}{} failed ({}) after {} restart(s) "
                   "of role {} within {} s (supervision.max_restarts = {}); "
                   "last good checkpoint: none",
                   name, where, why, times.size(), role, st.spec.within_s,
                   st.spec.max_restarts));
    return;
  }
  self->send(st.listener, info_atom::value,
             fmt::format("{}{} failed ({}); restarting ({})", name, where, why,
                         st.spec.strategy));
  st.recovering.push_back({now, slowest_steps(st)});
  for (const auto& target : restart_set(st, name)) {
    if (target != name) {
      auto* a =
          slot_of(st.topo, split_name(target).first, split_name(target).second);
      if (a == nullptr || !*a)
        continue;
      st.topo.names.erase(a->address());
      self->send_exit(*a, caf::exit_reason::user_shutdown);
    }
    times.push_back(now);
    ++st.result.restarts;
    ++st.result.restarts_by_role[split_name(target).first];
    respawn(self, target);
  }
}

job_status status_of(coordinator_state& st) {
  job_status s;
  s.job = st.spec.name;
  s.mode = st.spec.mode;
  s.state = !st.started ? "starting" : st.finished ? "finished" : "training";
  s.nodes = st.topo.node_names;
  s.placement = st.topo.placement;
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
                          topology topo) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.listener = std::move(listener);
  st.topo = std::move(topo);
  st.steps_done.assign(static_cast<std::size_t>(st.spec.workers), 0);
  st.pushed.assign(static_cast<std::size_t>(st.spec.workers), 0);
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  st.param_count = devices::nn::param_count(
      devices::nn::param_layout(st.spec.inputs, st.spec.layers));
  st.durable.resize(static_cast<std::size_t>(st.spec.partitions));
  {
    // Snapshots live in a directory of this job's own, removed at the end.
    const auto base = std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/troupe-snapshots-XXXXXX";
    const char* made = ::mkdtemp(tmpl.data());
    st.store = spawn_snapshot_store(self, made != nullptr ? made : base,
                                    caf::actor_cast<caf::actor>(self));
  }
  auto& t = st.topo;
  for (auto* v : {&t.data_shards, &t.param_shards, &t.aggregators, &t.workers})
    for (auto& a : *v)
      self->monitor(a);
  if (t.evaluator)
    self->monitor(t.evaluator);
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
      [=](ready_atom, const std::string& role, std::int32_t index) {
        auto& st = self->state;
        st.ready_names.insert(
            role == "evaluator" ? role : fmt::format("{}:{}", role, index));
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
        for (auto& w : st.topo.workers)
          self->send(w, start_atom::value);
      },
      [=](progress_msg& p) {
        auto& st = self->state;
        const auto w = static_cast<std::size_t>(p.worker);
        st.steps_done[w] = p.steps_done;
        st.pushed[w] = p.pushed;
        st.max_lead = std::max(st.max_lead, p.max_lead);
        st.compute_s += p.compute_s;
        st.wait_s += p.wait_s;
        auto& acc = st.epochs[p.epoch];
        acc.loss_sum += p.loss_sum;
        acc.samples += p.samples;
        if (p.samples > 0)
          st.recent_loss = p.loss_sum / static_cast<double>(p.samples);
        if (p.epoch_end && ++acc.workers_done == st.spec.workers) {
          acc.train_done = true;
          acc.end = clock_type::now();
        }
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
        if (slowest != st.reported_steps) {
          st.reported_steps = slowest;
          self->send(st.listener, progress_atom::value, slowest,
                     st.spec.total_steps(), st.recent_loss);
        }
        if (acc.train_done)
          emit_epochs(self);
      },
      [=](eval_msg& e) {
        auto& st = self->state;
        st.epochs[e.epoch - 1].eval = e;
        st.milestones.erase(e.epoch);
        emit_epochs(self);
      },
      [=](status_atom) { return status_of(self->state); },
      [=](kill_atom, const std::string& target) -> std::string {
        // `troupe kill`: the actor dies as a crash would, and supervision
        // takes over.
        auto& st = self->state;
        const auto name = target == "evaluator:0" ? "evaluator" : target;
        for (const auto& [addr, n] : st.topo.names)
          if (n == name) {
            auto [role, index] = split_name(name);
            auto* a = slot_of(st.topo, role, index);
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
        const auto offset = st.spec.shard_begin(m.shard, st.param_count);
        self->send(st.store, snapshot_atom::value, std::move(m), offset,
                   st.param_count);
      },
      [=](durable_atom, std::int32_t shard, std::int64_t version) {
        on_durable(self, shard, version);
      },
  };
}

} // namespace

void register_coordinator(caf::actor_system_config& cfg) {
  cfg.add_actor_type("coordinator", coordinator);
}

} // namespace troupe::actors

// The supervisor's loop: detect, restart set, respawn, escalate, roll back.
// What each restarted role needs to catch up is its own recovery hook.
#include "actors/supervisor.hpp"
#include "actors/protocol.hpp"

#include "actors/placement.hpp"
#include "actors/update_rule.hpp"
#include "actors/wiring.hpp"
#include "runtime/node_protocol.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

// The role of an actor named by to_string(actor_id).
const char* role_of(const std::string& name) {
  return name_of(parse_actor_id(name).kind);
}

} // namespace

supervisor::supervisor(caf::event_based_actor* self, supervised_job& job,
                       job_spec& spec, topology& topo, run_result& result,
                       checkpoint_ledger& ledger, caf::actor store)
  : self_(self)
  , job_(job)
  , spec_(spec)
  , topo_(topo)
  , result_(result)
  , ledger_(ledger)
  , store_(std::move(store))
  , first_step_(static_cast<std::size_t>(spec.workers), 0)
  , chaos_done_(spec.chaos.size(), false) {}

void supervisor::watch_all() {
  auto& t = topo_;
  for (auto* v :
       {&t.data_shards, &t.stages, &t.param_shards, &t.aggregators, &t.workers})
    for (auto& a : *v)
      self_->monitor(a);
  if (t.evaluator)
    self_->monitor(t.evaluator);
  for (std::size_t n = 0; n < t.managers.size(); ++n) {
    manager_of_[t.managers[n].address()] = n;
    self_->monitor(t.managers[n]);
  }
}

std::int64_t supervisor::incarnation(const std::string& name) const {
  auto it = incarnation_.find(name);
  return it != incarnation_.end() ? it->second : 0;
}

void supervisor::progressed(std::int64_t slowest) {
  for (auto it = recovering_.begin(); it != recovering_.end();) {
    if (!it->work.expired()) {
      ++it; // respawns or hooks still under way
    } else if (it->settled < 0) {
      it->settled = slowest;
      ++it;
    } else if (slowest > it->settled) {
      const auto ms = std::chrono::duration<double, std::milli>(
                          clock_type::now() - it->detected)
                          .count();
      result_.recovery_ms.push_back(ms);
      announce("recovered", it->what == "the rollback" ? "" : it->what, "", ms,
               fmt::format("{} recovered: training went on {:.0f} ms after the "
                           "failure",
                           it->what, ms));
      it = recovering_.erase(it);
    } else {
      ++it;
    }
  }
  for (std::size_t i = 0; i < spec_.chaos.size(); ++i) {
    const auto& e = spec_.chaos[i];
    if (e.role == "node" && !chaos_done_[i] && slowest >= e.at_step) {
      chaos_done_[i] = true;
      fault_node(e.node, e.action);
    }
  }
}

std::string supervisor::kill(const std::string& target) {
  if (target.rfind("node:", 0) == 0)
    return fault_node(target.substr(5), "kill");
  const auto name = target == "evaluator:0" ? "evaluator" : target;
  std::vector<std::string> known;
  for (const auto& [addr, n] : topo_.names) {
    if (n == name) {
      auto* a = slot_of(topo_, parse_actor_id(name));
      if (a != nullptr && *a) {
        auto where = topo_.placement.find(name);
        announce("fault", name,
                 where != topo_.placement.end() ? where->second : std::string(),
                 0, fmt::format("fault injected: kill {}", name));
        self_->send_exit(*a, caf::exit_reason::kill);
        return "";
      }
    }
    known.push_back(n);
  }
  std::sort(known.begin(), known.end());
  return fmt::format("no actor {} in this job (actors: {})", target,
                     fmt::join(known, ", "));
}

void supervisor::count_restart(const std::string& name) {
  ++result_.restarts;
  ++result_.restarts_by_role[role_of(name)];
  ++result_.restarts_by_actor[name];
}

// The restarted actor is `h`: its slot, its name, watched.
void supervisor::adopt(const std::string& name, const caf::actor& h) {
  *slot_of(topo_, parse_actor_id(name)) = h;
  topo_.names[h.address()] = name;
  self_->monitor(h);
}

void supervisor::recover(const std::string& name, caf::actor h) {
  adopt(name, h);
  const auto id = parse_actor_id(name);
  switch (id.kind) {
    case role::worker:
      recover_worker(*this, id.index, h);
      break;
    case role::data_shard:
      recover_data_shard(*this, id.index, h);
      break;
    case role::stage:
      recover_stage(*this, id.index, h);
      break;
    case role::aggregator:
      recover_aggregator(*this, id.index, h);
      break;
    case role::param_shard:
      recover_param_shard(*this, id.index, h);
      break;
    case role::evaluator:
      recover_evaluator(*this, h);
      break;
  }
}

// The node `name` is to run on: its own, or, when that node was lost, the
// one rehome() picks (a GPU worker may change device there). Returns the
// node's index, or none (why says why) when no surviving node can take it.
std::optional<std::size_t> supervisor::home_of(const std::string& name,
                                               std::string& why) {
  auto& t = topo_;
  const auto& node = t.placement[name];
  if (lost_nodes_.count(node) == 0) {
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
  const auto home = rehome(name_of(id.kind), id.index, spec_, slots,
                           lost_nodes_, t.placement);
  if (!home.node) {
    why = home.why;
    return std::nullopt;
  }
  t.placement[name] = t.node_names[*home.node];
  if (!home.device.empty())
    spec_.worker_devices[static_cast<std::size_t>(id.index)] = home.device;
  return home.node;
}

// Spawns actor `name` again, its incarnation counted: on its node, or on a
// surviving one when its node was lost. `then` gets the new handle (the
// default: recover it alone).
void supervisor::respawn(const std::string& name,
                         std::function<void(caf::actor)> then) {
  auto& t = topo_;
  if (!then) {
    const auto gen = generation_;
    then = [=, hold = hold_](caf::actor h) {
      if (stale(gen) || job_.finished()) {
        // The job rolled back meanwhile; that spawned everything anew.
        self_->send_exit(h, caf::exit_reason::user_shutdown);
        return;
      }
      // For the hook's requests (this may run inside the restart loop).
      auto outer = std::exchange(hold_, hold);
      recover(name, std::move(h));
      hold_ = std::move(outer);
    };
  }
  const auto id = parse_actor_id(name);
  const std::string role_name = name_of(id.kind);
  // The node first: a GPU worker that moves may change device.
  std::optional<std::size_t> n;
  if (!t.managers.empty()) {
    std::string why;
    n = home_of(name, why);
    if (!n) {
      job_.fail(fmt::format("cannot restart {}: {}", name, why));
      return;
    }
  }
  auto spec = spec_;
  spec.incarnation = ++incarnation_[name];
  auto args = spawn_args(id, spec, t.aggregator_of_worker);
  if (t.managers.empty()) {
    auto h = self_->system().spawn<caf::actor>(role_name, std::move(args));
    if (!h) {
      job_.fail(fmt::format("cannot restart {}: {}", name,
                            self_->system().render(h.error())));
      return;
    }
    then(*h);
    return;
  }
  const auto node = t.node_names[*n];
  self_
      ->request(t.managers[*n], std::chrono::seconds(30),
                runtime::spawn_atom::value, t.job_id, t.owner, role_name,
                std::move(args))
      .then([=](caf::actor& h) { then(std::move(h)); },
            [=](caf::error& err) {
              if (job_.finished())
                return;
              if (lost_nodes_.count(node) == 0 &&
                  err != caf::sec::request_timeout) {
                job_.fail(fmt::format("cannot restart {} on node {}: {}", name,
                                      node, self_->system().render(err)));
                return;
              }
              // The node went away while we asked it: it is lost too.
              node_lost(*n, fmt::format("it did not spawn {}: {}", name,
                                        self_->system().render(err)));
            });
}

// The names the strategy restarts when `name` fails: itself (one_for_one),
// every actor of its role (one_for_all), or itself and those of its role
// with a higher index (rest_for_one).
std::vector<std::string>
supervisor::restart_set(const std::string& name) const {
  const auto id = parse_actor_id(name);
  if (spec_.strategy == "one_for_one" || id.kind == role::evaluator)
    return {name};
  const auto count = count_of(topo_, id.kind);
  std::vector<std::string> out{name};
  for (std::size_t i = 0; i < count; ++i) {
    const auto k = static_cast<std::int32_t>(i);
    if (k == id.index || (spec_.strategy == "rest_for_one" && k < id.index))
      continue;
    out.push_back(to_string(actor_id{id.kind, k}));
  }
  return out;
}

// Every training actor stops (the evaluator too when its node is lost);
// their names are dropped first, so their down messages are ignored.
void supervisor::stop_training_actors() {
  auto& t = topo_;
  auto stop = [&](caf::actor& a) {
    if (!a)
      return;
    t.names.erase(a.address());
    self_->send_exit(a, caf::exit_reason::user_shutdown);
    a = nullptr;
  };
  for (auto* v :
       {&t.workers, &t.aggregators, &t.stages, &t.data_shards, &t.param_shards})
    for (auto& a : *v)
      stop(a);
  if (lost_nodes_.count(t.placement["evaluator"]) > 0)
    stop(t.evaluator);
}

// The actors are there again: the param shards take the checkpoint's state
// (version 0: the seeded start), everything is wired, and the workers go on
// from its step.
void supervisor::restore_all(std::int64_t version,
                             const std::vector<shard_state_msg>& states,
                             std::optional<clock_type::time_point> detected,
                             bool evaluator_new) {
  auto& t = topo_;
  for (std::size_t p = 0; p < t.param_shards.size(); ++p) {
    shard_state_msg m;
    m.shard = static_cast<std::int32_t>(p);
    if (p < states.size())
      m = states[p];
    tell(self_, param_shard_at(t, p), restore_atom::value, std::move(m));
  }
  wire_all(self_, t);
  if (evaluator_new)
    job_.evaluator_restarted();
  // sync: every worker at the checkpoint's step. async/ssp: each at the
  // first of its gradients some shard's ledger lacks, with the current
  // parameters (shards that have it drop it as a duplicate).
  const update_rule rule(spec_);
  std::vector<std::int64_t> steps(t.workers.size(), version);
  for (std::size_t r = 0; r < t.workers.size(); ++r) {
    if (!rule.sums_workers()) {
      steps[r] = states.empty() ? 0 : std::numeric_limits<std::int64_t>::max();
      for (const auto& m : states)
        steps[r] = std::min(
            steps[r], rule.replay_from(version, m.ledger, r, t.workers.size()));
    }
    first_step_[r] = steps[r];
    tell(self_, worker_at(t, r), recover_atom::value, steps[r]);
    if (!rule.sums_workers())
      for (auto& p : t.param_shards)
        tell(self_, param_shard_handle{p}, fetch_atom::value, steps[r],
             static_cast<std::int32_t>(r), t.workers[r]);
  }
  job_.workers_at(steps);
  recovering_.clear();
  if (detected) // a failure's recovery (not a resume): timed
    recovering_.push_back({*detected, job_.slowest_steps(), "the rollback"});
  ledger_.restart_from(version);
  rolling_ = false;
  announce("resumed", "", "", 0,
           fmt::format("the job goes on from step {}", version));
}

// Spawns every training actor again (on the surviving nodes) and restores
// them to checkpoint `version` once all are there. Answers for an older
// rollback (`gen`) are dropped.
void supervisor::respawn_all(
    std::int64_t gen, std::int64_t version,
    std::shared_ptr<const std::vector<shard_state_msg>> states,
    std::optional<clock_type::time_point> detected) {
  auto& t = topo_;
  std::vector<std::string> names;
  auto add = [&](role r, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i)
      names.push_back(to_string(actor_id{r, static_cast<std::int32_t>(i)}));
  };
  add(role::data_shard, t.data_shards.size());
  add(role::stage, t.stages.size());
  add(role::param_shard, t.param_shards.size());
  add(role::aggregator, t.aggregators.size());
  add(role::worker, t.workers.size());
  const bool evaluator_new = !spec_.test.empty() && !t.evaluator;
  if (evaluator_new)
    names.push_back(to_string(actor_id{role::evaluator, 0}));
  auto left = std::make_shared<std::size_t>(names.size());
  for (const auto& name : names)
    respawn(name, [=](caf::actor h) {
      if (stale(gen) || job_.finished()) {
        self_->send_exit(h, caf::exit_reason::user_shutdown);
        return;
      }
      adopt(name, h);
      if (--*left == 0)
        restore_all(version, *states, detected, evaluator_new);
    });
}

// Asks the store for the newest good checkpoint; reports the files it
// refused and hands the checkpoint (version, states) to `then`, unless the
// job rolled back again meanwhile (`gen`) or ended.
void supervisor::with_checkpoint(
    std::int64_t gen, const char* what,
    std::function<void(std::int64_t, std::vector<shard_state_msg>&)> then) {
  ask(self_, snapshot_store_handle{store_}, std::chrono::seconds(60),
      checkpoint_atom::value)
      .then(
          [=](std::int64_t version, std::vector<shard_state_msg>& states,
              std::vector<std::string>& problems) {
            if (stale(gen) || job_.finished())
              return;
            for (auto& p : problems)
              job_.info(fmt::format("snapshot refused, falling back to an "
                                    "older checkpoint: {}",
                                    p));
            then(version, states);
          },
          [=](caf::error& err) {
            job_.fail(fmt::format("{}: the snapshot store did not answer: {}",
                                  what, self_->system().render(err)));
          });
}

// Sync training is deterministic, so the job ends with the bits it would
// have had; the steps since the checkpoint are done twice.
void supervisor::rollback(const std::string& why) {
  const auto gen = ++generation_;
  const auto detected = clock_type::now();
  rolling_ = true;
  ++result_.rollbacks;
  stop_training_actors();
  announce(
      "rollback", "", "", 0,
      fmt::format("{}: rolling the job back to its newest checkpoint", why));
  with_checkpoint(
      gen, "rolling back",
      [=](std::int64_t version, std::vector<shard_state_msg>& states) {
        respawn_all(gen, version,
                    std::make_shared<const std::vector<shard_state_msg>>(
                        std::move(states)),
                    detected);
      });
}

void supervisor::resume() {
  const auto gen = ++generation_;
  rolling_ = true;
  with_checkpoint(
      gen, "resuming",
      [=](std::int64_t version, std::vector<shard_state_msg>& states) {
        if (version > 0) {
          result_.resumed_from = version;
          ledger_.resumed(version);
        }
        if (job_.resumed_at(version, states)) {
          rolling_ = false;
          return;
        }
        if (version == 0) {
          rolling_ = false;
          for (auto& w : topo_.workers)
            tell(self_, worker_handle{w}, start_atom::value);
          return;
        }
        stop_training_actors();
        respawn_all(gen, version,
                    std::make_shared<const std::vector<shard_state_msg>>(
                        std::move(states)),
                    std::nullopt);
      });
}

void supervisor::announce(std::string kind, std::string actor, std::string node,
                          double ms, std::string message) {
  job_event e;
  e.kind = std::move(kind);
  e.actor = std::move(actor);
  e.node = std::move(node);
  e.step = job_.slowest_steps();
  e.ms = ms;
  e.message = std::move(message);
  job_.event(std::move(e));
}

void supervisor::node_lost(std::size_t n, const std::string& why) {
  if (job_.finished())
    return;
  const auto node = topo_.node_names[n];
  if (!lost_nodes_.insert(node).second)
    return; // known already
  result_.lost_nodes.push_back(node);
  double detection_ms = 0;
  if (auto f = faulted_.find(node); f != faulted_.end()) {
    detection_ms =
        std::chrono::duration<double, std::milli>(clock_type::now() - f->second)
            .count();
    result_.fault_detection_ms.push_back(detection_ms);
  }
  announce("node_lost", "", node, detection_ms,
           fmt::format("node {} lost: {}", node, why));
  if (!job_.started()) {
    job_.fail(fmt::format("node {} was lost during start-up: {}", node, why));
    return;
  }
  if (lost_nodes_.size() == topo_.node_names.size()) {
    job_.fail(fmt::format("node {} was lost ({}), and it was the last node "
                          "of the job",
                          node, why));
    return;
  }
  // Nobody waits on its data-plane connections any more (a frozen node
  // does not read them: senders would block until their timeout).
  const auto key = runtime::bulk_key(topo_.managers[n].node());
  if (auto plane = runtime::process_bulk_plane())
    plane->forget_peer(key);
  for (std::size_t m = 0; m < topo_.managers.size(); ++m)
    if (m != n && lost_nodes_.count(topo_.node_names[m]) == 0)
      self_->send(topo_.managers[m], runtime::forget_atom::value, key);
  // Its actors are restarted elsewhere: they count as restarts.
  for (const auto& [actor, where] : topo_.placement)
    if (where == node)
      count_restart(actor);
  rollback(fmt::format("node {} lost ({})", node, why));
}

void supervisor::on_down(const caf::down_msg& dm) {
  if (job_.finished())
    return;
  const auto why = dm.reason ? self_->system().render(dm.reason)
                             : std::string("exited normally");
  auto manager = manager_of_.find(dm.source);
  if (manager != manager_of_.end()) {
    node_lost(manager->second,
              fmt::format("its node manager stopped: {}", why));
    return;
  }
  auto it = topo_.names.find(dm.source);
  if (it == topo_.names.end())
    return; // replaced already, or stopped by us to be restarted
  const auto name = it->second;
  topo_.names.erase(it);
  auto node = topo_.placement.find(name);
  const auto where =
      node != topo_.placement.end() ? " on node " + node->second : "";
  if (dm.reason == caf::exit_reason::kill)
    for (const auto& e : spec_.chaos)
      if (e.role != "node" && e.action == "kill" &&
          e.incarnation == incarnation(name) &&
          (e.target() == name ||
           (e.role == "evaluator" && name == "evaluator")))
        announce("fault", name,
                 node != topo_.placement.end() ? node->second : "", 0,
                 fmt::format("fault injected: [[chaos]] kill {} at step {}",
                             name, e.at_step));
  if (!job_.started()) {
    job_.fail(
        fmt::format("{}{} stopped during start-up: {}", name, where, why));
    return;
  }
  if (dm.reason == caf::exit_reason::remote_link_unreachable &&
      node != topo_.placement.end()) {
    // The node is gone (killed, or silent past the heartbeat timeout),
    // with every actor on it.
    const auto& names = topo_.node_names;
    const auto n = static_cast<std::size_t>(
        std::find(names.begin(), names.end(), node->second) - names.begin());
    if (n < names.size()) {
      node_lost(n, fmt::format("{} stopped: {}", name, why));
      return;
    }
  }
  // Escalation: too many restarts of this role within the window.
  const std::string role_name = role_of(name);
  const auto now = clock_type::now();
  auto& times = restart_times_[role_name];
  const auto window = std::chrono::duration<double>(spec_.within_s);
  while (!times.empty() && now - times.front() > window)
    times.pop_front();
  if (static_cast<std::int64_t>(times.size()) >= spec_.max_restarts) {
    job_.fail(fmt::format(
        "supervision gave up: {}{} failed ({}) after {} restart(s) of role {} "
        "within {} s (supervision.max_restarts = {}); last good checkpoint: {}",
        name, where, why, times.size(), role_name, spec_.within_s,
        spec_.max_restarts, job_.last_checkpoint()));
    return;
  }
  if (rolling_ || !recovering_.empty()) {
    // A second failure while one recovery is under way: the peers the
    // first recovery counts on may be the ones gone. Go back to a state
    // that holds for all instead.
    times.push_back(now);
    count_restart(name);
    announce(
        "failed", name, node != topo_.placement.end() ? node->second : "", 0,
        fmt::format("{}{} failed ({}) during a recovery", name, where, why));
    rollback(
        fmt::format("{}{} failed ({}) during a recovery", name, where, why));
    return;
  }
  auto work = std::make_shared<int>(0);
  recovering_.push_back({now, -1, name, work});
  hold_ = std::move(work); // held by the respawns from here
  for (const auto& target : restart_set(name)) {
    if (target != name) {
      auto* a = slot_of(topo_, parse_actor_id(target));
      if (a == nullptr || !*a)
        continue;
      topo_.names.erase(a->address());
      self_->send_exit(*a, caf::exit_reason::user_shutdown);
    }
    times.push_back(now);
    count_restart(target);
    respawn(target);
  }
  hold_.reset();
  // Told once counted, so that the status that follows has the restarts.
  announce("failed", name, node != topo_.placement.end() ? node->second : "", 0,
           fmt::format("{}{} failed ({}); restarting ({})", name, where, why,
                       spec_.strategy));
}

std::string supervisor::fault_node(const std::string& node,
                                   const std::string& action) {
  const auto& names = topo_.node_names;
  const auto n = static_cast<std::size_t>(
      std::find(names.begin(), names.end(), node) - names.begin());
  if (topo_.managers.empty())
    return "this job runs in one process: it has no node to kill";
  if (n >= names.size() || n >= topo_.managers.size())
    return fmt::format("no node {} in this job (nodes: {})", node,
                       fmt::join(names, ", "));
  if (lost_nodes_.count(node) > 0)
    return fmt::format("node {} was lost already", node);
  announce("fault", "", node, 0,
           fmt::format("fault injected: {} node {}", action, node));
  faulted_[node] = clock_type::now();
  self_->send(topo_.managers[n], runtime::fault_atom::value, action);
  return "";
}

} // namespace troupe::actors

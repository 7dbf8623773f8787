// coordinator: one per job, in the driver's process. Wires the actors the
// driver placed, starts training when every worker and the evaluator are
// ready, turns worker progress and evaluations into epoch summaries for its
// listener, answers `troupe status`, and ends the job with the digest of
// the final parameters. Any actor that stops fails the job.
#include "actors/messages.hpp"

#include "devices/nn/layers.hpp"
#include "runtime/digest.hpp"

#include <algorithm>
#include <chrono>
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
  devices::tensor final_params;
  std::int64_t final_slices = 0;
  bool final_complete = false;
  run_result result;
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
  if (st.finished || !st.final_complete || st.emitted_epochs < st.spec.epochs)
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
  r.param_count = st.final_params.numel();
  r.params_digest =
      runtime::sha256_hex(st.final_params.data(), st.final_params.bytes());
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

// Sends every actor the handles it talks to.
void wire(self_ptr self) {
  auto& t = self->state.topo;
  auto me = caf::actor_cast<caf::actor>(self);
  for (auto& p : t.param_shards)
    self->send(p, wire_atom::value, t.aggregators, t.aggregator_of_worker,
               t.evaluator, me);
  for (std::size_t a = 0; a < t.aggregators.size(); ++a) {
    std::vector<caf::actor> local;
    for (std::size_t r = 0; r < t.workers.size(); ++r)
      if (t.aggregator_of_worker[r] == static_cast<std::int32_t>(a))
        local.push_back(t.workers[r]);
    self->send(t.aggregators[a], wire_atom::value, local, t.param_shards);
  }
  for (std::size_t r = 0; r < t.workers.size(); ++r) {
    const auto d = t.data_shard_of_worker[r];
    const auto a = t.aggregator_of_worker[r];
    // A worker alone on its node has nothing to sum with: it sends its
    // gradient to the shards itself, piece by piece while it computes.
    const bool alone = std::count(t.aggregator_of_worker.begin(),
                                  t.aggregator_of_worker.end(), a) == 1;
    self->send(t.workers[r], wire_atom::value,
               t.aggregators[static_cast<std::size_t>(a)],
               d >= 0 ? t.data_shards[static_cast<std::size_t>(d)]
                      : caf::actor{},
               me, alone ? t.param_shards : std::vector<caf::actor>{});
  }
  if (t.evaluator)
    self->send(t.evaluator, wire_atom::value, me);
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
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.finished)
      return;
    auto it = st.topo.names.find(dm.source);
    const std::string who =
        it != st.topo.names.end() ? it->second : std::string("an actor");
    auto node = st.topo.placement.find(who);
    fail(self, fmt::format("{}{} stopped: {}", who,
                           node != st.topo.placement.end()
                               ? " on node " + node->second
                               : std::string(),
                           dm.reason ? self->system().render(dm.reason)
                                     : std::string("exited normally")));
  });
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
        if (slowest != st.reported_steps) {
          st.reported_steps = slowest;
          self->send(st.listener, progress_atom::value, slowest,
                     st.spec.total_steps(), st.recent_loss);
        }
        if (acc.train_done)
          emit_epochs(self);
      },
      [=](eval_msg& e) {
        self->state.epochs[e.epoch - 1].eval = e;
        emit_epochs(self);
      },
      [=](status_atom) { return status_of(self->state); },
      [=](params_msg& p) {
        // The final parameters, from every param shard.
        auto& st = self->state;
        if (p.tag != -1)
          return;
        if (!st.final_params.defined()) {
          const auto n = devices::nn::param_count(
              devices::nn::param_layout(st.spec.inputs, st.spec.layers));
          st.final_params = devices::tensor::empty({n});
        }
        auto dst = st.final_params.slice(p.offset, p.values.numel());
        devices::cpu().copy(p.values, dst);
        st.final_slices += p.values.numel(); // elements received
        if (st.final_slices == st.final_params.numel()) {
          st.final_complete = true;
          st.t_train_end = clock_type::now();
          maybe_finish(self);
        }
      },
  };
}

} // namespace

void register_coordinator(caf::actor_system_config& cfg) {
  cfg.add_actor_type("coordinator", coordinator);
}

} // namespace troupe::actors

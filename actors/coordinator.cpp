// coordinator: one per job. Spawns the roles by name, wires them, starts
// training when every worker and the evaluator are ready, turns worker
// progress and evaluations into epoch summaries for its listener, and ends
// the job with the digest of the final parameters.
#include "actors/messages.hpp"

#include "devices/nn/layers.hpp"
#include "runtime/digest.hpp"

#include <chrono>
#include <fmt/format.h>
#include <map>

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
  std::vector<caf::actor> data_shards, param_shards, workers;
  caf::actor evaluator;
  std::map<caf::actor_addr, std::string> names;
  std::int64_t expected_ready = 0;
  std::int64_t ready = 0;
  bool started = false;
  bool finished = false;
  clock_type::time_point t_start;
  clock_type::time_point t_train_end;
  std::vector<std::int64_t> steps_done; // by worker
  std::int64_t reported_steps = -1;
  double recent_loss = 0;
  std::map<std::int64_t, epoch_acc> epochs;
  std::int64_t emitted_epochs = 0;
  devices::tensor final_params;
  std::int64_t final_slices = 0;
  bool final_complete = false;
  run_result result;
};

void shutdown(caf::stateful_actor<coordinator_state>* self, caf::error reason) {
  auto& st = self->state;
  auto stop = [&](std::vector<caf::actor>& v) {
    for (auto& a : v)
      self->send_exit(a, caf::exit_reason::user_shutdown);
    v.clear();
  };
  stop(st.workers);
  stop(st.data_shards);
  stop(st.param_shards);
  if (st.evaluator)
    self->send_exit(st.evaluator, caf::exit_reason::user_shutdown);
  st.evaluator = nullptr;
  self->quit(std::move(reason));
}

void fail(caf::stateful_actor<coordinator_state>* self, std::string why) {
  auto& st = self->state;
  if (st.finished)
    return;
  st.finished = true;
  self->send(st.listener, failed_atom::value, std::move(why));
  shutdown(self, caf::exit_reason::user_shutdown);
}

void maybe_finish(caf::stateful_actor<coordinator_state>* self) {
  auto& st = self->state;
  if (st.finished || !st.final_complete || st.emitted_epochs < st.spec.epochs)
    return;
  st.finished = true;
  auto& r = st.result;
  r.job = st.spec.name;
  r.mode = st.spec.mode;
  r.nodes = 1;
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
  if (!r.history.empty() && r.history.back().evaluated) {
    r.test_loss = r.history.back().test_loss;
    r.test_accuracy = r.history.back().test_accuracy;
  }
  self->send(st.listener, done_atom::value, r);
  shutdown(self, caf::exit_reason::normal);
}

void emit_epochs(caf::stateful_actor<coordinator_state>* self) {
  auto& st = self->state;
  while (st.emitted_epochs < st.spec.epochs) {
    auto it = st.epochs.find(st.emitted_epochs);
    if (it == st.epochs.end() || !it->second.train_done)
      return;
    auto& acc = it->second;
    if (st.evaluator && !acc.eval)
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

caf::expected<caf::actor>
spawn_role(caf::stateful_actor<coordinator_state>* self,
           const std::string& role, std::int32_t index, caf::message args) {
  auto h = self->system().spawn<caf::actor>(role, std::move(args));
  if (!h)
    return h;
  self->monitor(*h);
  const auto name =
      role == "evaluator" ? role : fmt::format("{}:{}", role, index);
  self->state.names[h->address()] = name;
  self->state.result.placement[name] = "local";
  return h;
}

caf::behavior coordinator(caf::stateful_actor<coordinator_state>* self,
                          job_spec spec, caf::actor listener) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.listener = std::move(listener);
  st.steps_done.assign(static_cast<std::size_t>(st.spec.workers), 0);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.finished)
      return;
    auto it = st.names.find(dm.source);
    const std::string who = it != st.names.end() ? it->second : "an actor";
    fail(self, fmt::format("{} stopped: {}", who,
                           dm.reason ? self->system().render(dm.reason)
                                     : std::string("exited normally")));
  });
  auto spawn_all = [&]() -> std::string {
    for (std::int32_t i = 0; i < st.spec.shards; ++i) {
      auto h = spawn_role(self, "data_shard", i, caf::make_message(st.spec, i));
      if (!h)
        return self->system().render(h.error());
      st.data_shards.push_back(*h);
    }
    for (std::int32_t i = 0; i < st.spec.partitions; ++i) {
      auto h =
          spawn_role(self, "param_shard", i, caf::make_message(st.spec, i));
      if (!h)
        return self->system().render(h.error());
      st.param_shards.push_back(*h);
    }
    if (!st.spec.test.empty()) {
      auto h = spawn_role(self, "evaluator", 0, caf::make_message(st.spec));
      if (!h)
        return self->system().render(h.error());
      st.evaluator = *h;
      ++st.expected_ready;
    }
    for (std::int32_t i = 0; i < st.spec.workers; ++i) {
      auto h = spawn_role(self, "worker", i, caf::make_message(st.spec, i));
      if (!h)
        return self->system().render(h.error());
      st.workers.push_back(*h);
      ++st.expected_ready;
    }
    return {};
  };
  if (auto err = spawn_all(); !err.empty()) {
    self->send(st.listener, failed_atom::value, "cannot spawn actors: " + err);
    shutdown(self, caf::exit_reason::user_shutdown);
    return {};
  }
  auto me = caf::actor_cast<caf::actor>(self);
  for (auto& p : st.param_shards)
    self->send(p, wire_atom::value, st.workers, st.evaluator, me);
  for (std::size_t r = 0; r < st.workers.size(); ++r)
    self->send(st.workers[r], wire_atom::value, st.param_shards,
               st.data_shards[r % st.data_shards.size()], me);
  if (st.evaluator)
    self->send(st.evaluator, wire_atom::value, me);
  return {
      [=](ready_atom, const std::string&, std::int32_t) {
        auto& st = self->state;
        if (st.started || ++st.ready < st.expected_ready)
          return;
        st.started = true;
        self->send(st.listener, info_atom::value,
                   fmt::format("training: {} worker(s), {} param shard(s), {} "
                               "data shard(s), {} steps",
                               st.spec.workers, st.spec.partitions,
                               st.spec.shards, st.spec.total_steps()));
        st.t_start = clock_type::now();
        for (auto& w : st.workers)
          self->send(w, start_atom::value);
      },
      [=](progress_msg& p) {
        auto& st = self->state;
        st.steps_done[static_cast<std::size_t>(p.worker)] = p.steps_done;
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
        auto& st = self->state;
        const auto epoch = (e.version + st.spec.steps_per_epoch - 1) /
                               st.spec.steps_per_epoch -
                           1;
        st.epochs[epoch].eval = e;
        emit_epochs(self);
      },
      [=](params_msg& p) {
        // The final version, from every param shard.
        auto& st = self->state;
        if (p.version != st.spec.total_steps())
          return;
        if (!st.final_params.defined()) {
          const auto n = devices::nn::param_count(
              devices::nn::param_layout(st.spec.inputs, st.spec.layers));
          st.final_params = devices::tensor::empty({n});
        }
        auto dst = st.final_params.slice(p.offset, p.values.numel());
        devices::cpu().copy(p.values, dst);
        if (++st.final_slices == st.spec.partitions) {
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

// evaluator: test-set loss and accuracy of each epoch's parameters, which
// the coordinator sends it (whole or in pieces), beside training: workers
// never wait for it. The evaluation itself runs on a detached helper thread
// at the lowest CPU priority (SCHED_IDLE), so it only takes cycles that
// training leaves idle; on a busy machine an epoch's figures may come late,
// never the training.
#include "actors/evaluation.hpp"
#include "actors/faults.hpp"
#include "actors/protocol.hpp"
#include "actors/supervisor.hpp"
#include "actors/wiring.hpp"

#include "devices/nn/model.hpp"

#include <map>

#include <sched.h>

namespace troupe::actors {

namespace {

struct pending_version {
  devices::tensor params;
  std::int64_t received = 0; // elements
};

struct evaluator_state {
  job_spec spec;
  dataset_ptr test;
  std::int64_t param_count = 0;
  std::map<std::int64_t, pending_version> versions; // by epoch
  std::vector<std::int64_t> ready; // complete versions waiting for data
  coordinator_handle coordinator;
  caf::actor runner; // does the evaluating, once the test data is there
};

struct runner_state {
  job_spec spec;
  dataset_ptr test;
  std::unique_ptr<devices::nn::model> net;
  bool lowered = false;
};

eval_msg evaluate(runner_state& st, std::int64_t epoch,
                  const devices::tensor& params) {
  const auto e = actors::evaluate(*st.net, params, *st.test, &st.spec);
  eval_msg out;
  out.epoch = epoch;
  out.loss = e.loss;
  out.accuracy = e.accuracy ? *e.accuracy : -1.0;
  out.metrics = e.metrics;
  return out;
}

// Runs on its own thread (spawned detached): (epoch, params, coordinator)
// -> eval_msg to the coordinator.
caf::behavior runner(caf::stateful_actor<runner_state>* self, job_spec spec,
                     dataset_ptr test) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.test = std::move(test);
  st.net = std::make_unique<devices::nn::model>(
      devices::cpu(), st.spec.model_input(), st.spec.layers, st.spec.loss);
  return {
      [=](std::int64_t epoch, const devices::tensor& params,
          const caf::actor& coordinator) {
        auto& st = self->state;
        if (!st.lowered) {
          // This thread only: 0 names the caller. Lowering needs no rights.
          sched_param none{};
          sched_setscheduler(0, SCHED_IDLE, &none);
          st.lowered = true;
        }
        eval_msg m;
        try {
          m = evaluate(st, epoch, params);
        } catch (const std::runtime_error& e) {
          // A user's [[metric]] failed: the evaluator fails with its words.
          self->quit(caf::make_error(caf::sec::runtime_error, e.what()));
          return;
        }
        tell(self, coordinator_handle{coordinator}, std::move(m));
      },
  };
}

void drain(caf::stateful_actor<evaluator_state>* self) {
  auto& st = self->state;
  if (!st.runner || !st.coordinator)
    return;
  for (auto v : st.ready) {
    auto it = st.versions.find(v);
    self->send(st.runner, v, std::move(it->second.params),
               st.coordinator.raw());
    st.versions.erase(it);
  }
  st.ready.clear();
}

caf::behavior evaluator(caf::stateful_actor<evaluator_state>* self,
                        job_spec spec) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.param_count = devices::nn::param_count(
      devices::nn::param_layout(st.spec.model_input(), st.spec.layers));
  load_in_background(self, test_source(st.spec));
  return behavior_of<evaluator_inbox>(
      [=](wire_atom, caf::actor coordinator) {
        self->state.coordinator = coordinator_handle{std::move(coordinator)};
        if (self->state.test)
          tell(self, self->state.coordinator, ready_atom::value,
               std::string("evaluator"), std::int32_t{0});
        drain(self);
      },
      [=](loaded_atom, dataset_ptr ds) {
        auto& st = self->state;
        st.test = std::move(ds);
        st.runner =
            self->spawn<caf::detached + caf::linked>(runner, st.spec, st.test);
        if (st.coordinator)
          tell(self, st.coordinator, ready_atom::value,
               std::string("evaluator"), std::int32_t{0});
        drain(self);
      },
      [=](params_msg& p) {
        auto& st = self->state;
        if (!slice_fits(p.offset, p.values.numel(), st.param_count) ||
            p.tag < 1 || p.tag > st.spec.epochs)
          return; // not a piece of an epoch's parameters
        auto& v = st.versions[p.tag];
        if (!v.params.defined())
          v.params = devices::tensor::empty({st.param_count});
        auto dst = v.params.slice(p.offset, p.values.numel());
        devices::cpu().copy(p.values, dst);
        v.received += p.values.numel();
        if (v.received == st.param_count) {
          st.ready.push_back(p.tag);
          drain(self);
        }
      });
}

} // namespace

void register_evaluator(caf::actor_system_config& cfg) {
  cfg.add_actor_type(name_of(role::evaluator),
                     spawn_with_faults<role::evaluator, evaluator>);
}

void recover_evaluator(supervisor& sup, const caf::actor& h) {
  // Shards send epoch parameters through the coordinator: they need no
  // rewiring.
  tell(sup.self(), evaluator_handle{h}, wire_atom::value,
       caf::actor_cast<caf::actor>(sup.self()));
  sup.job().evaluator_restarted();
}

} // namespace troupe::actors

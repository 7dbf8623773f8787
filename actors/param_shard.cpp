// param_shard: owns parameters [begin, end) of the flattened model and their
// optimizer state. In sync mode it waits for every worker's gradient of
// step t, sums them along the canonical tree over worker ranks, applies the
// optimizer and publishes version t + 1.
#include "actors/messages.hpp"

#include "devices/nn/layers.hpp"
#include "runtime/reduce_tree.hpp"

#include <algorithm>
#include <map>

namespace troupe::actors {

namespace {

struct param_shard_state {
  job_spec spec;
  std::int32_t index = 0;
  std::int64_t begin = 0;
  std::int64_t size = 0;
  devices::tensor params; // current version; never written once published
  std::vector<devices::tensor> opt_state;
  std::vector<devices::tensor> spares; // earlier versions, reused when free
  std::int64_t version = 0;
  std::map<std::int64_t, std::vector<devices::tensor>>
      pending;                                  // step -> by rank
  std::map<std::int64_t, std::int64_t> arrived; // step -> count
  std::vector<caf::actor> workers;
  caf::actor evaluator;
  caf::actor coordinator;
};

void publish(caf::stateful_actor<param_shard_state>* self) {
  auto& st = self->state;
  params_msg msg{st.index, st.version, st.begin, st.params};
  for (auto& w : st.workers)
    self->send(w, msg);
  const bool last = st.version == st.spec.total_steps();
  if (st.evaluator && st.version > 0 &&
      (st.version % st.spec.steps_per_epoch == 0 || last))
    self->send(st.evaluator, msg);
  if (last)
    self->send(st.coordinator, msg);
}

void apply_step(caf::stateful_actor<param_shard_state>* self,
                std::int64_t step) {
  auto& st = self->state;
  auto& dev = devices::cpu();
  auto grads = std::move(st.pending[step]);
  st.pending.erase(step);
  st.arrived.erase(step);
  auto sum = runtime::tree_reduce<devices::tensor>(
      0, static_cast<std::int64_t>(grads.size()),
      [&](std::int64_t r) { return grads[static_cast<std::size_t>(r)]; },
      [&](devices::tensor a, devices::tensor b) {
        // Never write into a worker's buffer: sum into fresh storage unless
        // the left operand is already ours.
        if (std::any_of(
                grads.begin(), grads.end(),
                [&](const devices::tensor& g) { return g.shares_storage(a); }))
          a = a.clone();
        dev.axpy(1.0f, b, a);
        return a;
      });
  // Published versions are immutable; recycle one nobody holds any more
  // (warm in cache, no allocation), else allocate.
  devices::tensor next;
  for (auto& spare : st.spares)
    if (spare.use_count() == 1) {
      next = std::move(spare);
      break;
    }
  if (!next.defined())
    next = dev.alloc({st.size});
  st.spares.erase(
      std::remove_if(st.spares.begin(), st.spares.end(),
                     [](const devices::tensor& t) { return !t.defined(); }),
      st.spares.end());
  dev.optimizer_step(st.spec.optimizer, st.version + 1, st.params, sum,
                     st.opt_state.data(), next);
  if (st.spares.size() < 3)
    st.spares.push_back(std::move(st.params));
  st.params = std::move(next);
  ++st.version;
  publish(self);
}

caf::behavior param_shard(caf::stateful_actor<param_shard_state>* self,
                          job_spec spec, std::int32_t index) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.index = index;
  const auto layout = devices::nn::param_layout(st.spec.inputs, st.spec.layers);
  const auto total = devices::nn::param_count(layout);
  st.begin = st.spec.shard_begin(index, total);
  st.size = st.spec.shard_begin(index + 1, total) - st.begin;
  st.params = devices::tensor::empty({st.size});
  devices::nn::init_params(layout, st.spec.seed, st.begin, st.size,
                           st.params.data());
  for (int i = 0; i < devices::optimizer_state_count(st.spec.optimizer.kind);
       ++i)
    st.opt_state.push_back(devices::tensor::zeros({st.size}));
  return {
      [=](wire_atom, std::vector<caf::actor> workers, caf::actor evaluator,
          caf::actor coordinator) {
        auto& st = self->state;
        st.workers = std::move(workers);
        st.evaluator = std::move(evaluator);
        st.coordinator = std::move(coordinator);
        publish(self);
      },
      [=](grad_msg& g) {
        auto& st = self->state;
        if (g.step < st.version || g.offset != st.begin ||
            g.values.numel() != st.size || g.worker < 0 ||
            g.worker >= st.spec.workers)
          return; // a duplicate of an applied step, or not for this shard
        auto& slot = st.pending[g.step];
        if (slot.empty())
          slot.resize(static_cast<std::size_t>(st.spec.workers));
        auto& cell = slot[static_cast<std::size_t>(g.worker)];
        if (cell.defined())
          return; // duplicate
        cell = std::move(g.values);
        if (++st.arrived[g.step] == st.spec.workers && g.step == st.version)
          apply_step(self, g.step);
      },
  };
}

} // namespace

void register_param_shard(caf::actor_system_config& cfg) {
  cfg.add_actor_type("param_shard", param_shard);
}

} // namespace troupe::actors

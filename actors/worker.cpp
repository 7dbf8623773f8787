// worker: a model replica. For each global step t it needs parameters of
// version t (all shards) and its batch of step t; it computes the gradient,
// sends each shard its slice, returns a credit to its data shard and waits
// for version t + 1.
#include "actors/messages.hpp"

#include "data/sampler.hpp"
#include "devices/nn/model.hpp"

#include <chrono>
#include <deque>

namespace troupe::actors {

namespace {

struct worker_state {
  job_spec spec;
  std::int32_t rank = 0;
  std::unique_ptr<devices::nn::model> net;
  devices::tensor params; // flat, version `version`
  devices::tensor grad;
  std::int64_t version = -1;        // complete parameter version held
  std::int64_t incoming = -1;       // version being assembled
  std::int64_t slices = 0;          // slices of `incoming` received
  std::vector<std::int64_t> bounds; // shard ranges, partitions + 1 entries
  std::vector<caf::actor> shards;
  caf::actor data;
  caf::actor coordinator;
  std::deque<batch_msg> batches;
  std::int64_t step = 0; // next global step to compute
  std::int64_t seq = 0;
  bool started = false;
  bool ready_sent = false;
  // Totals since the last progress report.
  double loss_sum = 0;
  std::int64_t samples = 0;
  std::int64_t report_every = 1;
  float grad_scale = 1;
};

void report(caf::stateful_actor<worker_state>* self, bool epoch_end) {
  auto& st = self->state;
  progress_msg p;
  p.worker = st.rank;
  p.epoch = (st.step - 1) / st.spec.steps_per_epoch;
  p.steps_done = st.step;
  p.loss_sum = st.loss_sum;
  p.samples = st.samples;
  p.epoch_end = epoch_end;
  self->send(st.coordinator, p);
  st.loss_sum = 0;
  st.samples = 0;
}

void try_step(caf::stateful_actor<worker_state>* self) {
  auto& st = self->state;
  if (!st.ready_sent && st.version == 0 && !st.batches.empty()) {
    st.ready_sent = true;
    self->send(st.coordinator, ready_atom::value, std::string("worker"),
               st.rank);
  }
  if (!st.started || st.version != st.step || st.batches.empty() ||
      st.step >= st.spec.total_steps())
    return;
  auto b = std::move(st.batches.front());
  st.batches.pop_front();
  // Credit first: the data shard prepares the next batch while we compute.
  self->send(st.data, credit_atom::value, st.rank, std::int64_t{1},
             caf::actor_cast<caf::actor>(self));
  if (st.grad.use_count() != 1)
    st.grad = devices::tensor::empty({st.net->param_count()});
  auto sums = st.net->train_step(st.params, b.x, b.y, st.grad_scale, st.grad);
  for (std::size_t s = 0; s < st.shards.size(); ++s) {
    grad_msg g;
    g.worker = st.rank;
    g.step = st.step;
    g.seq = st.seq++;
    g.offset = st.bounds[s];
    g.values = st.grad.slice(st.bounds[s], st.bounds[s + 1] - st.bounds[s]);
    self->send(st.shards[s], std::move(g));
  }
  st.loss_sum += sums.loss;
  st.samples += b.x.dim(0);
  ++st.step;
  const bool epoch_end = st.step % st.spec.steps_per_epoch == 0;
  if (epoch_end || st.step % st.report_every == 0)
    report(self, epoch_end);
}

caf::behavior worker(caf::stateful_actor<worker_state>* self, job_spec spec,
                     std::int32_t rank) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.rank = rank;
  st.net = std::make_unique<devices::nn::model>(devices::cpu(), st.spec.inputs,
                                                st.spec.layers, st.spec.loss);
  const auto total = st.net->param_count();
  st.params = devices::tensor::empty({total});
  st.grad = devices::tensor::empty({total});
  for (std::int64_t s = 0; s <= st.spec.partitions; ++s)
    st.bounds.push_back(st.spec.shard_begin(s, total));
  st.report_every = std::max<std::int64_t>(1, st.spec.steps_per_epoch / 20);
  // The loss is the mean over the global batch: each worker scales its
  // summed per-sample gradient by 1 / global batch, and shards add them up.
  st.grad_scale = 1.0f / static_cast<float>(st.spec.batch);
  return {
      [=](wire_atom, std::vector<caf::actor> shards, caf::actor data,
          caf::actor coordinator) {
        auto& st = self->state;
        st.shards = std::move(shards);
        st.data = std::move(data);
        st.coordinator = std::move(coordinator);
        self->send(st.data, credit_atom::value, st.rank, st.spec.prefetch,
                   caf::actor_cast<caf::actor>(self));
      },
      [=](start_atom) {
        self->state.started = true;
        try_step(self);
      },
      [=](batch_msg& b) {
        self->state.batches.push_back(std::move(b));
        try_step(self);
      },
      [=](params_msg& p) {
        auto& st = self->state;
        if (p.version <= st.version)
          return; // stale
        if (p.version != st.incoming) {
          st.incoming = p.version;
          st.slices = 0;
        }
        if (st.spec.partitions == 1) {
          st.params = std::move(p.values); // one shard: use its buffer as is
        } else {
          if (st.params.use_count() != 1)
            st.params = devices::tensor::empty({st.net->param_count()});
          auto dst = st.params.slice(p.offset, p.values.numel());
          devices::cpu().copy(p.values, dst);
        }
        if (++st.slices == st.spec.partitions) {
          st.version = st.incoming;
          try_step(self);
        }
      },
  };
}

} // namespace

void register_worker(caf::actor_system_config& cfg) {
  cfg.add_actor_type("worker", worker);
}

} // namespace troupe::actors

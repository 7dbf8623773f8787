// worker: a model replica. It needs a complete set of parameter slices and
// its next batch; it computes forward, loss and backward, sends the gradient
// to its node's aggregator, returns a credit to its data shard, and waits
// for the next set of slices: in sync mode version t + 1 (after every
// worker's step t), in async/ssp mode each shard's answer to its gradient.
#include "actors/messages.hpp"

#include "devices/nn/model.hpp"

#include <chrono>
#include <deque>

namespace troupe::actors {

namespace {

struct worker_state {
  job_spec spec;
  std::int32_t rank = 0;
  std::unique_ptr<devices::nn::model> net;
  devices::tensor params;
  devices::tensor grad;
  std::int64_t awaiting =
      0; // parameter elements still due before the next step
  std::int64_t min_clock = -1; // async/ssp: slowest worker's steps, as told
  caf::actor aggregator;
  caf::actor data;
  caf::actor coordinator;
  std::deque<batch_msg> batches;
  std::int64_t step = 0; // next global step to compute
  bool started = false;
  bool ready_sent = false;
  bool delaying = false; // testing.slow_ms
  double loss_sum = 0;
  std::int64_t samples = 0;
  std::int64_t report_every = 1;
  std::int64_t max_lead = 0;
  float grad_scale = 1;
  // Where a worker's time goes, since the last report.
  std::chrono::steady_clock::time_point sent_at;
  bool waiting = false;
  double compute_s = 0;
  double wait_s = 0;
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
  p.max_lead = st.max_lead;
  p.pushed = st.step;
  p.compute_s = st.compute_s;
  p.wait_s = st.wait_s;
  st.compute_s = 0;
  st.wait_s = 0;
  self->send(st.coordinator, p);
  st.loss_sum = 0;
  st.samples = 0;
}

void compute(caf::stateful_actor<worker_state>* self) {
  auto& st = self->state;
  const auto t0 = std::chrono::steady_clock::now();
  if (st.grad.use_count() != 1)
    st.grad = devices::tensor::empty({st.net->param_count()});
  devices::loss_sums sums;
  std::int64_t samples = 0;
  if (st.spec.exchange_only) {
    // Benchmark of the exchange alone: a fixed gradient, no data.
    devices::cpu().fill(st.grad, 1.0f / static_cast<float>(st.rank + 1));
  } else {
    auto b = std::move(st.batches.front());
    st.batches.pop_front();
    // Credit first: the data shard prepares the next batch while we compute.
    self->send(st.data, credit_atom::value, st.rank, std::int64_t{1},
               caf::actor_cast<caf::actor>(self));
    sums = st.net->train_step(st.params, b.x, b.y, st.grad_scale, st.grad);
    samples = b.x.dim(0);
  }
  grad_msg g;
  g.worker = st.rank;
  g.step = st.step;
  g.seq = st.step;
  g.lo = st.rank;
  g.hi = st.rank + 1;
  g.offset = 0;
  g.values = st.grad;
  st.awaiting = st.net->param_count();
  self->send(st.aggregator, std::move(g));
  st.sent_at = std::chrono::steady_clock::now();
  st.waiting = true;
  st.compute_s += std::chrono::duration<double>(st.sent_at - t0).count();
  st.loss_sum += sums.loss;
  st.samples += samples;
  ++st.step;
  const bool epoch_end = st.step % st.spec.steps_per_epoch == 0;
  if (epoch_end || st.step % st.report_every == 0)
    report(self, epoch_end);
}

void try_step(caf::stateful_actor<worker_state>* self) {
  auto& st = self->state;
  const bool have_batch = st.spec.exchange_only || !st.batches.empty();
  if (!st.ready_sent && st.awaiting == 0 && have_batch) {
    st.ready_sent = true;
    self->send(st.coordinator, ready_atom::value, std::string("worker"),
               st.rank);
  }
  if (!st.started || st.awaiting > 0 || !have_batch || st.delaying ||
      st.step >= st.spec.total_steps())
    return;
  if (st.rank == st.spec.slow_worker && st.spec.slow_ms > 0) {
    st.delaying = true;
    self->delayed_send(self, std::chrono::milliseconds(st.spec.slow_ms),
                       resume_atom::value);
    return;
  }
  compute(self);
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
  st.awaiting = total; // version 0
  st.report_every = std::max<std::int64_t>(1, st.spec.steps_per_epoch / 20);
  // sync: the loss is the mean over the global batch, so each worker scales
  // by 1 / global batch and the shards add the workers up. async/ssp: each
  // gradient is applied on its own, as the mean over its local batch.
  st.grad_scale =
      1.0f / static_cast<float>(st.spec.synchronous()
                                    ? st.spec.batch
                                    : st.spec.batch / st.spec.workers);
  return {
      [=](wire_atom, caf::actor aggregator, caf::actor data,
          caf::actor coordinator) {
        auto& st = self->state;
        st.aggregator = std::move(aggregator);
        st.data = std::move(data);
        st.coordinator = std::move(coordinator);
        if (st.data)
          self->send(st.data, credit_atom::value, st.rank, st.spec.prefetch,
                     caf::actor_cast<caf::actor>(self));
        try_step(self);
      },
      [=](start_atom) {
        self->state.started = true;
        try_step(self);
      },
      [=](resume_atom) {
        auto& st = self->state;
        st.delaying = false;
        if (st.started && st.awaiting == 0 &&
            (st.spec.exchange_only || !st.batches.empty()) &&
            st.step < st.spec.total_steps())
          compute(self);
      },
      [=](batch_msg& b) {
        self->state.batches.push_back(std::move(b));
        try_step(self);
      },
      [=](params_msg& p) {
        auto& st = self->state;
        if (st.awaiting == 0)
          return; // nothing is due: a duplicate
        const auto n = p.values.numel();
        if (n == st.net->param_count()) {
          st.params = std::move(p.values); // one shard, whole: use it as is
        } else {
          if (st.params.use_count() != 1)
            st.params = devices::tensor::empty({st.net->param_count()});
          auto dst = st.params.slice(p.offset, p.values.numel());
          devices::cpu().copy(p.values, dst);
        }
        st.min_clock = st.min_clock < 0 ? p.min_clock
                                        : std::min(st.min_clock, p.min_clock);
        st.awaiting -= n;
        if (st.awaiting == 0) {
          if (st.waiting) {
            st.waiting = false;
            st.wait_s += std::chrono::duration<double>(
                             std::chrono::steady_clock::now() - st.sent_at)
                             .count();
          }
          if (!st.spec.synchronous() && st.min_clock >= 0)
            st.max_lead = std::max(st.max_lead, st.step - st.min_clock);
          st.min_clock = -1;
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

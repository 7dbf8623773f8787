// worker: a model replica. It needs a complete set of parameter slices and
// its next batch; it computes forward, loss and backward, sends the gradient
// to its node's aggregator, returns a credit to its data shard, and waits
// for the next set of slices: in sync mode version t + 1 (after every
// worker's step t), in async/ssp mode each shard's answer to its gradient.
//
// The exchange overlaps the computation both ways. The forward pass starts
// as soon as the batch and the first parameter slices are there and runs on
// each slice as it arrives (slices from this node's shards come first).
// A worker alone on its node sends each shard its range of the gradient
// directly, as soon as that range is final, computing the ranges of shards
// on other nodes first, so their transfer runs while it computes the rest.
//
// On a GPU (its rank's entry in spec.worker_devices is "cuda:N") a worker
// hands each step whole to a detached helper that owns the CUDA device, its
// cuBLAS handle and stream: the GPU's waits block that helper's thread, not
// a scheduler thread. The helper returns the gradient in pinned host memory
// and the worker sends it on as a CPU worker does.
//
// Recovery: a worker keeps each gradient it sent until every param shard's
// snapshot covers it (upstream backup: sync by step, async/ssp by the
// shards' ledgers), and replays them on request: to a param shard restarted
// from an older snapshot, or to a restarted aggregator. Parameters are
// taken only for the worker's step (sync: the version; async/ssp: the
// answer's tag); later ones wait, earlier ones are dropped. A restarted
// worker (incarnation > 0) waits to be told its step (recover_atom).
#include "actors/faults.hpp"
#include "actors/protocol.hpp"
#include "actors/supervisor.hpp"
#include "actors/update_rule.hpp"
#include "actors/wiring.hpp"
#include "runtime/exceptions.hpp"

#include "devices/backends.hpp"
#include "devices/nn/layers.hpp"
#include "devices/nn/model.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

using clock_type = std::chrono::steady_clock;

struct worker_state {
  job_spec spec;
  update_rule rule; // job.mode
  std::int32_t rank = 0;
  std::unique_ptr<devices::nn::model> net;
  std::int64_t total = 0;      // parameters
  devices::tensor params;      // the version being assembled or used
  devices::nn::range_set have; // parts of it present
  devices::tensor grad;
  std::int64_t min_clock = -1; // async/ssp: slowest worker's steps, as told
  aggregator_handle aggregator;
  data_shard_handle data;
  coordinator_handle coordinator;
  // Direct sends (this worker alone on its node): shards and their ranges.
  std::vector<param_shard_handle> shards;
  std::vector<std::int64_t> bounds;
  std::vector<bool> remote; // per shard: on another node
  // By global step: batches from another node may overtake each other
  // (CAF reroutes when a direct connection between nodes comes up).
  std::map<std::int64_t, batch_msg> batches;
  std::optional<batch_msg> current; // the batch whose forward pass runs
  std::int64_t step = 0;            // next global step to compute
  bool started = false;
  bool ready_sent = false;
  bool recovering = false; // restarted: waiting for recover_atom
  // Upstream backup: gradients sent, by step, until pruned.
  std::map<std::int64_t, devices::tensor> backup;
  std::vector<params_msg> ahead; // parameters for a later step than ours
  std::vector<devices::tensor> spare_grads; // pruned backups, for reuse
  std::size_t max_spare = 0;                // the replay window
  std::int64_t held_max = 0;                // most gradients held at once
  // Per step since the last report: loss summed over the batch, samples.
  std::vector<double> losses;
  std::vector<std::int64_t> samples;
  std::int64_t report_every = 1;
  std::int64_t max_lead = 0;
  float grad_scale = 1;
  // Where a worker's time goes, since the last report.
  clock_type::time_point sent_at;
  bool waiting = false;
  double compute_s = 0;
  double wait_s = 0;
  // GPU workers: the helper that computes, and whether a step is with it.
  caf::actor gpu;
  bool gpu_busy = false;
  clock_type::time_point gpu_sent_at;

  bool complete() const { return have.count() == total; }
};

using gpu_step_atom = caf::atom_constant<caf::atom("gpustep")>;
using gpu_done_atom = caf::atom_constant<caf::atom("gpudone")>;
using gpu_params_atom = caf::atom_constant<caf::atom("gpuparams")>;
using gpu_batch_atom = caf::atom_constant<caf::atom("gpubatch")>;

// What a worker takes: its inbox, and its GPU helper's answers.
using worker_inbox_here =
    extend<worker_inbox, takes<gpu_done_atom, std::int64_t, devices::tensor,
                               double, std::int64_t>>::type;

// Pinned gradient buffers a GPU helper keeps for reuse.
// How many gradient buffers a worker keeps for replay and reuse: its
// upstream backup holds gradients from the second newest snapshot on, two
// snapshot intervals and the steps a snapshot takes to reach the disk
// (measured: up to about one more interval), within 256 MiB.
std::size_t replay_window(const job_spec& spec, std::int64_t params) {
  const auto window =
      std::min(3 * spec.snapshot_every + 4, spec.total_steps() + 1);
  const auto budget = std::int64_t{256} << 20;
  const auto bytes = params * static_cast<std::int64_t>(sizeof(float));
  return static_cast<std::size_t>(std::max<std::int64_t>(
      1, std::min(window, budget / std::max<std::int64_t>(1, bytes))));
}

// A batch on the device, and the host tensor it came from.
struct staged_batch {
  devices::tensor host_x;
  devices::tensor x, y; // on the device
};

struct gpu_runner_state {
  std::unique_ptr<devices::device> gpu; // null: the CPU (detached_compute)
  devices::device* dev = nullptr;
  std::unique_ptr<devices::nn::model> net;
  devices::tensor params, grad;        // on the GPU
  std::vector<devices::tensor> pinned; // gradients handed out, for reuse
  std::size_t max_pinned = 4;          // the replay window
  // Batches uploaded ahead, by step, and device buffers free for more.
  std::map<std::int64_t, staged_batch> staged;
  std::vector<staged_batch> spare;
  std::int64_t last_step = -1; // the last step computed
  std::size_t max_staged = 4;

  // Device buffers for a batch of x's and y's shapes.
  staged_batch buffers(const devices::tensor& x, const devices::tensor& y) {
    while (!spare.empty()) {
      auto b = std::move(spare.back());
      spare.pop_back();
      if (b.x.shape() == x.shape() && b.y.shape() == y.shape())
        return b;
    }
    return {{}, dev->alloc(x.shape()), dev->alloc(y.shape())};
  }
};

// Runs detached, owning one GPU device (ordinal < 0: the CPU device, for
// testing.detached_compute): (gpu_params_atom, offset, values) uploads a
// parameter slice as it arrives; (gpu_batch_atom, step, x, y) uploads a
// batch as it arrives, so it crosses while the worker waits for parameters;
// (gpu_step_atom, step, x, y, grad_scale),
// once every slice of the step's parameters was sent, -> (gpu_done_atom,
// step, gradient in pinned host memory, loss, correct) to the sender. Device
// failures throw device_error naming the CUDA call; the helper is linked to its
// worker, which then fails too.
caf::behavior gpu_runner(caf::stateful_actor<gpu_runner_state>* self,
                         job_spec spec, std::int32_t rank,
                         std::int32_t ordinal) {
  auto& st = self->state;
  // A device_error ends the helper (and the worker linked to it) with its
  // text: the CUDA statement, file, line and error reach the job's error.
  self->set_exception_handler(runtime::exception_to_error);
  if (ordinal >= 0)
    st.gpu = devices::make_cuda_device(ordinal);
  st.dev = st.gpu ? st.gpu.get() : &devices::cpu();
  st.net = std::make_unique<devices::nn::model>(*st.dev, spec.model_input(),
                                                spec.layers, spec.loss);
  st.params = st.dev->alloc({st.net->param_count()});
  st.max_pinned = replay_window(spec, st.net->param_count());
  st.grad = st.dev->alloc({st.net->param_count()});
  st.max_staged =
      static_cast<std::size_t>(std::max<std::int64_t>(1, spec.prefetch + 1));
  return {
      [=](gpu_batch_atom, std::int64_t step, const devices::tensor& x,
          const devices::tensor& y) {
        auto& st = self->state;
        if (step <= st.last_step)
          return; // a step done already (served again after a recovery)
        auto it = st.staged.find(step);
        if (it == st.staged.end()) {
          if (st.staged.size() >= st.max_staged)
            return; // uploaded at its step instead
          it = st.staged.emplace(step, st.buffers(x, y)).first;
        }
        it->second.host_x = x;
        st.dev->upload(x, it->second.x);
        st.dev->upload(y, it->second.y);
      },
      [=](gpu_params_atom, std::int64_t offset, const devices::tensor& values) {
        auto& st = self->state;
        auto dst = st.params.slice(offset, values.numel());
        st.dev->upload(values, dst);
      },
      [=](gpu_step_atom, std::int64_t step, const devices::tensor& x,
          const devices::tensor& y, float grad_scale) {
        auto& st = self->state;
        // This step's batch: staged already when it is the same one.
        auto it = st.staged.find(step);
        staged_batch b;
        if (it != st.staged.end() && it->second.host_x.shares_storage(x)) {
          b = std::move(it->second);
          st.staged.erase(it);
        } else {
          b = st.buffers(x, y);
          st.dev->upload(x, b.x);
          st.dev->upload(y, b.y);
        }
        st.last_step = step;
        st.net->set_context(spec.step_context(step, rank));
        const auto sums =
            st.net->train_step(st.params, b.x, b.y, grad_scale, st.grad);
        // A pinned buffer no one else holds any more (the worker drops its
        // backups as the shards' snapshots prune them), else a new one, up
        // to the replay window; past it (a window longer than the budget),
        // pageable memory, which the driver copies into through a pinned
        // buffer of its own.
        devices::tensor out;
        for (auto& t : st.pinned)
          if (t.use_count() == 1) {
            out = t;
            break;
          }
        if (!out.defined() && st.pinned.size() < st.max_pinned) {
          out = st.dev->host_alloc({st.net->param_count()});
          st.pinned.push_back(out);
        }
        if (!out.defined())
          out = devices::tensor::empty({st.net->param_count()});
        st.dev->download(st.grad, out);
        // The download waited for the step: its buffers, and those of
        // steps passed, are free again.
        b.host_x = devices::tensor{};
        st.spare.push_back(std::move(b));
        for (auto s = st.staged.begin();
             s != st.staged.end() && s->first <= step;) {
          s->second.host_x = devices::tensor{};
          st.spare.push_back(std::move(s->second));
          s = st.staged.erase(s);
        }
        self->send(caf::actor_cast<caf::actor>(self->current_sender()),
                   gpu_done_atom::value, step, std::move(out), sums.loss,
                   sums.correct);
      },
  };
}

using self_ptr = caf::stateful_actor<worker_state>*;

void report(self_ptr self) {
  auto& st = self->state;
  progress_msg p;
  p.worker = st.rank;
  p.incarnation = st.spec.incarnation;
  p.steps_done = st.step;
  p.first_step = st.step - static_cast<std::int64_t>(st.losses.size());
  p.losses = std::move(st.losses);
  p.samples = std::move(st.samples);
  p.max_lead = st.max_lead;
  p.pushed = st.step;
  p.compute_s = st.compute_s;
  p.grad_buffers = st.held_max;
  p.wait_s = st.wait_s;
  st.compute_s = 0;
  st.wait_s = 0;
  tell(self, st.coordinator, std::move(p));
  st.losses.clear();
  st.samples.clear();
}

grad_msg gradient(const worker_state& st, const devices::tensor& grad,
                  std::int64_t step, std::int64_t offset, std::int64_t n) {
  grad_msg g;
  g.worker = st.rank;
  g.step = step;
  g.seq = step;
  g.lo = st.rank;
  g.hi = st.rank + 1;
  g.offset = offset;
  g.values = n == grad.numel() ? grad : grad.slice(offset, n);
  return g;
}

grad_msg gradient(const worker_state& st, std::int64_t offset, std::int64_t n) {
  return gradient(st, st.grad, st.step, offset, n);
}

// Sends the kept gradients of steps >= from again: to param shard `shard`
// (-1: every shard) when this worker sends to the shards itself, else
// whole to its aggregator.
// Sends the whole gradient of `step`: to param shard `shard` (-1: every
// shard) when this worker sends to the shards itself, else to its
// aggregator.
void send_gradient(self_ptr self, const devices::tensor& grad,
                   std::int64_t step, std::int32_t shard = -1) {
  auto& st = self->state;
  if (st.shards.empty()) {
    tell(self, st.aggregator, gradient(st, grad, step, 0, st.total));
    return;
  }
  for (std::size_t s = 0; s < st.shards.size(); ++s)
    if (shard < 0 || static_cast<std::size_t>(shard) == s)
      send_slices(self, st.shards[s],
                  gradient(st, grad, step, st.bounds[s],
                           st.bounds[s + 1] - st.bounds[s]));
}

void replay(self_ptr self, std::int32_t shard, std::int64_t from) {
  auto& st = self->state;
  for (auto it = st.backup.lower_bound(from); it != st.backup.end(); ++it)
    send_gradient(self, it->second, it->first, shard);
}

// Asks the data shard for batches from `from` on, `n` at a time.
void subscribe(self_ptr self, std::int64_t from) {
  auto& st = self->state;
  if (st.data)
    tell(self, st.data, resubscribe_atom::value, st.rank, from,
         st.spec.prefetch, caf::actor_cast<caf::actor>(self));
}

void on_params(self_ptr self, params_msg& p);

// Parameters that came ahead of our step and are due now.
void feed_ahead(self_ptr self) {
  auto& st = self->state;
  std::vector<params_msg> due;
  auto& a = st.ahead;
  auto step_of = [&](const params_msg& p) {
    return st.rule.step_of(p.version, p.tag);
  };
  for (auto it = a.begin(); it != a.end();) {
    if (step_of(*it) < st.step) {
      it = a.erase(it);
    } else if (step_of(*it) == st.step) {
      due.push_back(std::move(*it));
      it = a.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& p : due)
    on_params(self, p);
}

// After the gradient of st.step left (computing began at t0): keep it for
// replay, count the step, report, and take parameters that came ahead.
void step_done(self_ptr self, double loss, std::int64_t samples,
               clock_type::time_point t0) {
  auto& st = self->state;
  if (!st.spec.exchange_only) {
    st.backup.emplace(st.step, st.grad);
    st.held_max =
        std::max(st.held_max, static_cast<std::int64_t>(st.backup.size() +
                                                        st.spare_grads.size()));
  }
  st.have.clear();
  st.sent_at = clock_type::now();
  st.waiting = true;
  st.compute_s += std::chrono::duration<double>(st.sent_at - t0).count();
  st.losses.push_back(loss);
  st.samples.push_back(samples);
  ++st.step;
  const bool epoch_end = st.step % st.spec.steps_per_epoch == 0;
  if (epoch_end || st.step % st.report_every == 0)
    report(self);
  feed_ahead(self);
}

// Backward (or the benchmark's fixed gradient) and the gradient's way out.
void finish_step(self_ptr self) {
  auto& st = self->state;
  const auto t0 = clock_type::now();
  if (st.grad.use_count() != 1) {
    // Gradients kept for replay are recycled once pruned: fresh memory
    // each step would cost page faults.
    st.grad = devices::tensor{};
    while (!st.grad.defined() && !st.spare_grads.empty()) {
      auto t = std::move(st.spare_grads.back());
      st.spare_grads.pop_back();
      if (t.use_count() == 1)
        st.grad = std::move(t);
    }
    if (!st.grad.defined())
      st.grad = devices::tensor::empty({st.total});
  }
  const bool direct = !st.shards.empty();
  std::vector<bool> sent(st.shards.size(), false);
  devices::nn::range_set final_part;
  auto send_ready = [&] {
    for (std::size_t s = 0; s < st.shards.size(); ++s)
      if (!sent[s] && final_part.covers(st.bounds[s], st.bounds[s + 1])) {
        sent[s] = true;
        send_slices(
            self, st.shards[s],
            gradient(st, st.bounds[s], st.bounds[s + 1] - st.bounds[s]));
      }
  };
  devices::loss_sums sums;
  std::int64_t samples = 0;
  if (st.spec.exchange_only) {
    // Benchmark of the exchange alone: a fixed gradient, no data.
    devices::cpu().fill(st.grad, 1.0f / static_cast<float>(st.rank + 1));
    final_part.add(0, st.total);
  } else {
    devices::nn::grad_hooks hooks;
    if (direct) {
      hooks.ready = [&](std::int64_t b, std::int64_t e) {
        final_part.add(b, e);
        send_ready();
      };
      hooks.urgent = [&](std::int64_t b, std::int64_t e) {
        for (std::size_t s = 0; s < st.shards.size(); ++s)
          if (st.remote[s] && b < st.bounds[s + 1] && e > st.bounds[s])
            return true;
        return false;
      };
    }
    sums = st.net->backward(st.params, st.current->y, st.grad_scale, st.grad,
                            hooks);
    samples = st.current->x.dim(0);
    st.current.reset();
  }
  if (direct)
    send_ready();
  else
    tell(self, st.aggregator, gradient(st, 0, st.total));
  step_done(self, sums.loss, samples, t0);
}

// The whole gradient of this step is in st.grad (a GPU worker's): out to
// the shards or the aggregator, then on as finish_step goes on.
void send_whole_gradient(self_ptr self, double loss, std::int64_t samples) {
  auto& st = self->state;
  send_gradient(self, st.grad, st.step);
  step_done(self, loss, samples, st.gpu_sent_at);
}

// Does whatever the batches and parameters at hand allow.
void advance(self_ptr self) {
  auto& st = self->state;
  const bool have_batch =
      st.spec.exchange_only || st.batches.count(st.step) > 0;
  // Ready only once wired: parameters can beat the wiring here (they come
  // from another sender), and a ready sent to no one is lost.
  if (!st.ready_sent && st.coordinator && st.complete() && have_batch) {
    st.ready_sent = true;
    tell(self, st.coordinator, ready_atom::value, std::string("worker"),
         st.rank);
  }
  if (!st.started || st.recovering || st.step >= st.spec.total_steps())
    return;
  if (st.spec.exchange_only) {
    if (st.complete())
      finish_step(self);
    return;
  }
  if (st.gpu) {
    // A GPU step needs every parameter: the helper uploads them at once.
    if (st.gpu_busy || !have_batch || !st.complete())
      return;
  }
  if (!st.current) {
    if (!have_batch || st.have.empty())
      return;
    auto next = st.batches.find(st.step);
    st.current = std::move(next->second);
    st.batches.erase(next);
    // Credit first: the data shard prepares the next batch while we compute.
    tell(self, st.data, credit_atom::value, st.rank, st.step, std::int64_t{1},
         caf::actor_cast<caf::actor>(self));
    if (st.gpu) {
      st.gpu_busy = true;
      st.gpu_sent_at = clock_type::now();
      self->send(st.gpu, gpu_step_atom::value, st.step, st.current->x,
                 st.current->y, st.grad_scale);
      return;
    }
    st.net->set_context(st.spec.step_context(st.step, st.rank));
    st.net->begin_forward(st.current->x);
  }
  const auto t0 = clock_type::now();
  const bool forward_done = st.net->forward_ready(st.params, st.have);
  st.compute_s += std::chrono::duration<double>(clock_type::now() - t0).count();
  if (forward_done)
    finish_step(self);
}

void on_params(self_ptr self, params_msg& p) {
  auto& st = self->state;
  // Every byte from a socket is a claim: a slice outside the model, or for
  // a step far ahead of any a shard can publish, is dropped.
  if (!slice_fits(p.offset, p.values.numel(), st.total) ||
      st.rule.step_of(p.version, p.tag) > st.step + max_steps_ahead)
    return;
  if (st.rule.sums_workers()) {
    if (p.version < st.step)
      return; // a version we are past (a replay or a republication)
    if (p.version > st.step || st.recovering) {
      st.ahead.push_back(std::move(p));
      return;
    }
  } else if (st.recovering) {
    st.ahead.push_back(std::move(p)); // may be for the step we are told
    return;
  } else if (p.tag != st.step) {
    return; // an answer to a gradient we are past
  }
  const auto n = p.values.numel();
  if (st.have.covers(p.offset, p.offset + n))
    return; // nothing of it is due: a duplicate
  if (st.gpu) {
    // Straight on to the device: early slices cross while later ones are
    // still on their way. The helper takes them in order, before the step.
    self->send(st.gpu, gpu_params_atom::value, p.offset, std::move(p.values));
  } else if (n == st.total) {
    st.params = std::move(p.values); // one shard, whole: use it as is
  } else {
    if (st.have.empty() && st.params.use_count() != 1)
      st.params = devices::tensor::empty({st.total});
    auto dst = st.params.slice(p.offset, n);
    devices::cpu().copy(p.values, dst);
  }
  st.have.add(p.offset, p.offset + n);
  st.min_clock =
      st.min_clock < 0 ? p.min_clock : std::min(st.min_clock, p.min_clock);
  if (st.complete()) {
    if (st.waiting) {
      st.waiting = false;
      st.wait_s +=
          std::chrono::duration<double>(clock_type::now() - st.sent_at).count();
    }
    if (!st.rule.sums_workers() && st.min_clock >= 0)
      st.max_lead = std::max(st.max_lead, st.step - st.min_clock);
    st.min_clock = -1;
  }
  advance(self);
}

caf::behavior worker(self_ptr self, job_spec spec, std::int32_t rank) {
  auto& st = self->state;
  self->set_exception_handler(runtime::exception_to_error);
  st.spec = std::move(spec);
  st.rule = update_rule(st.spec);
  st.rank = rank;
  if (refuse_index(self, role::worker, rank, st.spec.workers))
    return {};
  st.net = std::make_unique<devices::nn::model>(
      devices::cpu(), st.spec.model_input(), st.spec.layers, st.spec.loss);
  st.total = st.net->param_count();
  st.params = devices::tensor::empty({st.total});
  st.grad = devices::tensor::empty({st.total});
  const auto& where = st.spec.worker_devices;
  const auto device_id =
      static_cast<std::size_t>(rank) < where.size() ? where[rank] : "cpu";
  const auto [kind, ordinal] = devices::parse_device_id(device_id);
  if (!st.spec.exchange_only &&
      (kind == devices::device_kind::cuda || st.spec.detached_compute))
    st.gpu = self->spawn<caf::detached + caf::linked>(
        gpu_runner, st.spec, rank,
        kind == devices::device_kind::cuda ? ordinal : std::int32_t{-1});
  if (!st.spec.exchange_only && !st.gpu) {
    // The replay window (up to two snapshot intervals of gradients) is
    // allocated and touched now, up to 256 MiB, rather than page by page
    // while training.
    st.max_spare = replay_window(st.spec, st.total);
    for (std::size_t i = 0; i < st.max_spare; ++i)
      st.spare_grads.push_back(devices::tensor::zeros({st.total}));
  }
  st.recovering = st.spec.incarnation > 0;
  for (std::int64_t s = 0; s <= st.spec.partitions; ++s)
    st.bounds.push_back(st.spec.shard_begin(s, st.total));
  st.report_every = std::max<std::int64_t>(1, st.spec.steps_per_epoch / 20);
  st.grad_scale = st.rule.grad_scale();
  return behavior_of<worker_inbox_here>(
      [=](wire_atom, caf::actor aggregator, caf::actor data,
          caf::actor coordinator, std::vector<caf::actor> shards) {
        // First wiring, or rewiring after a peer was restarted.
        auto& st = self->state;
        const bool first = !st.coordinator;
        const bool new_data = data != st.data.raw();
        const bool new_aggregator = !first && aggregator != st.aggregator.raw();
        st.aggregator = aggregator_handle{std::move(aggregator)};
        st.data = data_shard_handle{std::move(data)};
        st.coordinator = coordinator_handle{std::move(coordinator)};
        st.shards.clear();
        st.remote.clear();
        for (auto& s : shards) {
          st.remote.push_back(s && s.node() != self->node());
          st.shards.emplace_back(std::move(s));
        }
        if (new_data && !st.recovering) {
          // Batches we hold stay; the shard serves the rest.
          auto from = st.current ? st.step + 1 : st.step;
          while (st.batches.count(from) > 0)
            ++from;
          subscribe(self, from);
        }
        // A restarted aggregator lost what it was summing: send it our
        // last gradient (and the one before, in case it was mid-step). In
        // async/ssp mode it may have lost the answer it was relaying to us:
        // the shards answer the replay (a duplicate) again.
        if (new_aggregator && (st.shards.empty() || !st.rule.sums_workers()))
          replay(self, -1, st.step - 1);
        advance(self);
      },
      [=](recover_atom, std::int64_t step) {
        // Restarted: training is at `step`.
        auto& st = self->state;
        st.recovering = false;
        st.started = true;
        st.ready_sent = true;
        st.step = step;
        st.batches.erase(st.batches.begin(), st.batches.lower_bound(step));
        subscribe(self, step);
        feed_ahead(self);
        advance(self);
      },
      [=](replay_atom, std::int32_t shard, std::int64_t from) {
        replay(self, shard, from);
      },
      [=](prune_atom, std::int64_t below) {
        auto& st = self->state;
        auto& b = st.backup;
        const auto end = b.lower_bound(below);
        // A CPU worker reuses them, up to its window; a GPU worker lets them
        // go, so its helper's pinned buffers come free for the next steps.
        for (auto it = b.begin(); it != end; ++it)
          if (!st.gpu && st.spare_grads.size() < st.max_spare)
            st.spare_grads.push_back(std::move(it->second));
        b.erase(b.begin(), end);
      },
      [=](start_atom) {
        self->state.started = true;
        advance(self);
      },
      [=](batch_msg& b) {
        auto& st = self->state;
        const auto step = b.epoch * st.spec.steps_per_epoch + b.step;
        if (step < st.step)
          return; // served again after a resubscription; used already
        if (st.gpu)
          self->send(st.gpu, gpu_batch_atom::value, step, b.x, b.y);
        st.batches.emplace(step, std::move(b));
        advance(self);
      },
      [=](params_msg& p) { on_params(self, p); },
      [=](gpu_done_atom, std::int64_t step, devices::tensor& grad, double loss,
          std::int64_t) {
        auto& st = self->state;
        st.gpu_busy = false;
        if (step != st.step || !st.current) {
          // A recovery moved us on while the GPU computed: that batch and
          // gradient are for a step we are no longer at.
          st.current.reset();
          advance(self);
          return;
        }
        const auto samples = st.current->x.dim(0);
        st.current.reset();
        st.grad = std::move(grad);
        send_whole_gradient(self, loss, samples);
        advance(self);
      });
}

} // namespace

void register_worker(caf::actor_system_config& cfg) {
  cfg.add_actor_type(name_of(role::worker),
                     spawn_with_faults<role::worker, worker>);
}

namespace {

// A restarted worker fetches the versions the shards hold only once its
// aggregator relays to it: a version published between the fetch and that
// rewiring would go to the old handle. The aggregator may be restarting
// too: each try asks the current one, for a second.
void fetch_when_relayed(supervisor& sup, std::int32_t index, caf::actor h,
                        std::int64_t step, int tries,
                        std::shared_ptr<const void> hold) {
  auto* self = sup.self();
  auto& t = sup.topo();
  const auto a = static_cast<std::size_t>(
      t.aggregator_of_worker[static_cast<std::size_t>(index)]);
  wire_aggregator(self, t, a);
  const auto gen = sup.generation();
  ask(self, aggregator_at(t, a), std::chrono::seconds(1), wire_atom::value)
      .then(
          [=, &sup](bool) {
            (void)hold; // the recovery is under way until answered
            if (sup.stale(gen))
              return; // the job rolled back meanwhile
            // The worker kept no gradients from before `step`: the
            // shards snapshot at once, so that a restore needs none.
            for (auto& p : sup.topo().param_shards) {
              tell(sup.self(), param_shard_handle{p}, fetch_atom::value, step,
                   index, h);
              tell(sup.self(), param_shard_handle{p}, snapshot_atom::value);
            }
          },
          [=, &sup](caf::error& err) {
            if (sup.stale(gen))
              return;
            if (tries > 1) {
              fetch_when_relayed(sup, index, h, step, tries - 1, hold);
              return;
            }
            sup.job().fail(fmt::format(
                "recovering worker:{}: its aggregator did not answer: {}",
                index, sup.self()->system().render(err)));
          });
}

} // namespace

void recover_worker(supervisor& sup, std::int32_t index, const caf::actor& h) {
  // Shards are at most one version apart (sync): the worker redoes the
  // oldest step any shard still waits for. async/ssp: it redoes the oldest
  // of its gradients some shard has not applied (those that have drop it
  // as a duplicate).
  auto* self = sup.self();
  const auto gen = sup.generation();
  const auto& shards = sup.topo().param_shards;
  auto versions = std::make_shared<std::vector<std::int64_t>>();
  auto left = std::make_shared<std::size_t>(shards.size());
  auto on_version = [=, &sup, hold = sup.recovery_hold()](std::int64_t v) {
    if (sup.stale(gen))
      return; // the job rolled back meanwhile
    versions->push_back(v);
    if (--*left > 0)
      return;
    const auto step = *std::min_element(versions->begin(), versions->end());
    const auto i = static_cast<std::size_t>(index);
    sup.first_step()[i] = step;
    tell(sup.self(), worker_handle{h}, recover_atom::value, step);
    wire_worker(sup.self(), sup.topo(), i);
    fetch_when_relayed(sup, index, h, step, 30, hold);
  };
  auto on_error = [=, &sup, hold = sup.recovery_hold()](caf::error& err) {
    (void)hold;
    if (sup.stale(gen))
      return;
    sup.job().fail(
        fmt::format("recovering worker:{}: a param shard did not answer: {}",
                    index, sup.self()->system().render(err)));
  };
  const auto timeout = std::chrono::seconds(30);
  for (auto& p : shards) {
    if (update_rule(sup.spec()).sums_workers())
      ask(self, param_shard_handle{p}, timeout, version_atom::value)
          .then(on_version, on_error);
    else
      ask(self, param_shard_handle{p}, timeout, version_atom::value, index)
          .then(on_version, on_error);
  }
}

} // namespace troupe::actors

// param_shard: owns parameters [begin, end) of the flattened model and their
// optimizer state.
//  - sync: waits until the partial sums of step t cover every worker rank,
//    completes the canonical tree over ranks (the aggregators have summed
//    the subtrees that lie on one node), applies the optimizer once and
//    publishes version t + 1 to every aggregator.
//  - async (Downpour): applies each worker's gradient on arrival and answers
//    that worker with the current parameters (tagged with the step they
//    are for). Each worker's gradients are applied in sequence order,
//    exactly once: one that came already is dropped (and answered), one
//    that overtook an earlier one waits for it.
//  - ssp: as async, but the answer to a worker that has done t steps waits
//    until every worker has done at least t - staleness.
//
// Every snapshot_every versions it sends its state (parameters, optimizer
// state, at-most-once ledger) to the coordinator's snapshot store. Restarted
// (incarnation > 0), it waits for the state to restore (restore_atom) and
// keeps the gradients that come before it; the workers then replay the
// steps after the snapshot, and the shard reaches the same bits again.
#include "actors/faults.hpp"
#include "actors/protocol.hpp"
#include "actors/supervisor.hpp"
#include "actors/update_rule.hpp"
#include "actors/wiring.hpp"

#include "devices/nn/layers.hpp"
#include "runtime/reduce_tree.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

// async/ssp: one gradient from another node, assembled from its pieces.
struct partial_sum {
  devices::tensor values;
  std::int64_t received = 0; // elements; complete at the shard's size
};

// sync: a subtree's partial sum, kept per chunk. A piece that is exactly a
// chunk (what another node sends) is kept as it came, without a copy.
struct sync_part {
  std::vector<devices::tensor> chunk; // per chunk, once its first piece came
  std::vector<std::int64_t> got;      // per chunk: elements received
};

struct pending_step {
  std::map<std::pair<std::int32_t, std::int32_t>, sync_part> parts;
  std::vector<std::int64_t> leaves; // per chunk: ranks its complete parts sum
  std::vector<bool> applied;        // per chunk
  // optimizer.clip_norm: the summed chunks, kept until the step's scale
  // (from the global norm) is known.
  std::vector<devices::tensor> sums;
  bool norm_sent = false;
  float scale = -1; // < 0: not known yet
};

struct param_shard_state {
  job_spec spec;
  update_rule rule; // job.mode
  std::int32_t index = 0;
  // [controller]: the lr scale decided after each epoch (1-based epoch e at
  // e - 1), from the coordinator. In sync mode the decision on epoch e
  // applies from the first step of epoch e + 2, and that step waits for it.
  bool controlled = false;
  std::vector<double> decided;
  std::int64_t begin = 0;
  std::int64_t size = 0;
  devices::tensor params; // current version; never written once published
  devices::tensor prev;   // sync: the version before, for restarted workers
  bool restoring = false; // restarted, state not yet restored
  std::int64_t snapshotted = 0; // version of the last snapshot sent
  std::vector<grad_msg> held;   // gradients that came before the state
  std::vector<devices::tensor> opt_state;
  /// batch_norm running statistics inside this shard's slice: updated by
  /// their momentum rule instead of the optimizer.
  std::vector<devices::nn::param_block> running;
  /// clip_norm: where this shard's segments begin (shard-relative), the
  /// pieces between block starts, with the end last; running-statistics
  /// blocks are left out of the norm (they are not gradients).
  std::vector<std::int64_t> segments;
  std::vector<bool> segment_counts;
  std::vector<devices::tensor> spares; // earlier versions, reused when free
  std::int64_t version = 0;            // optimizer steps applied
  devices::tensor next;                // sync: version + 1, chunk by chunk
  std::int64_t chunks = 1;             // of chunk_elements, the last shorter
  std::map<std::int64_t, pending_step> pending;
  std::vector<aggregator_handle> aggregators;
  std::vector<std::int32_t> aggregator_of_worker;
  bool evaluator = false; // the job has one
  coordinator_handle coordinator;
  // async / ssp
  std::vector<std::int64_t> clock;    // gradients applied, per worker
  std::vector<std::int32_t> waiting;  // ssp: workers owed an answer
  std::vector<std::int64_t> last_seq; // per worker: highest seq applied
  std::int64_t epochs_sent = 0;
  std::int64_t duplicates = 0; // async/ssp: gradients dropped as applied
  struct fetch {
    std::int32_t worker;
    std::int64_t step;
    worker_handle to;
  };
  std::vector<fetch> fetches; // ssp: restarted workers held to the bound
  std::map<std::pair<std::int64_t, std::int64_t>, partial_sum>
      incoming; // async chunks
  // async/ssp: whole gradients that came before the ones a worker sent
  // earlier (a replay after a restore overtaken by a newer one): applied in
  // seq order, each exactly once.
  std::map<std::pair<std::int64_t, std::int64_t>, devices::tensor> early;
  static std::pair<std::int64_t, std::int64_t> pending_key(const grad_msg& g) {
    return {g.worker, g.seq};
  }
};

params_msg make_msg(const param_shard_state& st) {
  params_msg m;
  m.shard = st.index;
  m.version = st.version;
  m.offset = st.begin;
  m.values = st.params;
  m.min_clock = st.clock.empty()
                    ? st.version
                    : *std::min_element(st.clock.begin(), st.clock.end());
  return m;
}

// Epoch ends and the end of training, in this mode's units of version.
void publish_milestones(caf::stateful_actor<param_shard_state>* self) {
  auto& st = self->state;
  const auto per_epoch = st.rule.versions_per_epoch();
  const auto total = per_epoch * st.spec.epochs;
  while (st.epochs_sent < st.spec.epochs &&
         st.version >= (st.epochs_sent + 1) * per_epoch) {
    ++st.epochs_sent;
    if (st.evaluator || st.controlled) {
      // Through the coordinator, which keeps each until it is evaluated
      // (a restarted evaluator gets them again) and its controller has
      // judged it (a stop keeps that epoch's).
      auto m = make_msg(st);
      m.tag = st.epochs_sent;
      send_slices(self, st.coordinator, std::move(m));
    }
  }
  if (st.version == total) {
    auto m = make_msg(st);
    m.tag = -1;
    send_slices(self, st.coordinator, std::move(m));
    if (!st.rule.sums_workers()) {
      // The ledger: gradients applied, by worker.
      std::int64_t applied = 0;
      for (auto s : st.last_seq)
        applied += s + 1;
      tell(self, st.coordinator, applied_atom::value, st.index, applied);
    }
  }
}

void broadcast(caf::stateful_actor<param_shard_state>* self) {
  auto& st = self->state;
  auto m = make_msg(st);
  for (auto& a : st.aggregators)
    send_slices(self, a, m);
}

// async/ssp: the parameters for `worker`'s next step (tag: that step).
void answer(caf::stateful_actor<param_shard_state>* self, std::int32_t worker) {
  auto& st = self->state;
  const auto w = static_cast<std::size_t>(worker);
  if (w >= st.aggregator_of_worker.size())
    return; // not wired yet (a restored shard applying what it held): the
            // worker's replay, dropped as a duplicate, is answered
  auto m = make_msg(st);
  m.target = worker;
  m.tag = st.last_seq[static_cast<std::size_t>(worker)] + 1;
  send_slices(self,
              st.aggregators[static_cast<std::size_t>(
                  st.aggregator_of_worker[static_cast<std::size_t>(worker)])],
              std::move(m));
}

// Published versions are immutable; recycle one nobody holds any more
// (warm in cache, no allocation), else allocate.
devices::tensor fresh_buffer(param_shard_state& st) {
  devices::tensor next;
  for (auto& spare : st.spares)
    if (spare.use_count() == 1) {
      next = std::move(spare);
      break;
    }
  st.spares.erase(
      std::remove_if(st.spares.begin(), st.spares.end(),
                     [](const devices::tensor& t) { return !t.defined(); }),
      st.spares.end());
  if (!next.defined())
    next = devices::cpu().alloc({st.size});
  return next;
}

// The lr of global step `step` (1-based): sync, with the decisions on
// the epochs up to two before step's (job_spec::lr_at); async/ssp, with
// every decision so far (they take effect when they arrive).
double lr_of(const param_shard_state& st, std::int64_t step) {
  if (st.rule.sums_workers())
    return st.spec.lr_at(step, st.decided);
  auto lr = st.spec.lr_at(step);
  for (const auto scale : st.decided)
    lr *= scale;
  return lr;
}

// Sync with a controller: the next version's step may be applied once
// every decision it depends on is known.
bool may_apply(const param_shard_state& st) {
  if (!st.controlled || !st.rule.sums_workers())
    return true;
  const auto step = st.rule.step_of_version(st.version + 1);
  const auto epoch = (step - 1) / st.spec.steps_per_epoch;
  return static_cast<std::int64_t>(st.decided.size()) >= epoch - 1;
}

// The optimizer on elements [first, first + n) of the shard: params of the
// current version and grad in, `out` (the next version's range) out.
void update(param_shard_state& st, std::int64_t first, std::int64_t n,
            const devices::tensor& grad, devices::tensor out) {
  auto& dev = devices::cpu();
  if (st.spec.exchange_only) {
    dev.copy(grad, out); // the benchmark measures the exchange alone
    return;
  }
  std::vector<devices::tensor> state;
  for (auto& t : st.opt_state)
    state.push_back(n == st.size ? t : t.slice(first, n));
  const auto params = n == st.size ? st.params : st.params.slice(first, n);
  auto cfg = st.spec.optimizer;
  const auto step = st.rule.step_of_version(st.version + 1);
  cfg.lr = static_cast<float>(lr_of(st, step));
  dev.optimizer_step(cfg, st.version + 1, params, grad, state.data(), out);
  // What the workers sent for running statistics are batch statistics, not
  // gradients: those elements take the momentum rule instead.
  for (const auto& b : st.running) {
    const auto lo = std::max(b.offset, st.begin + first);
    const auto hi = std::min(b.offset + b.size(), st.begin + first + n);
    if (lo >= hi)
      continue;
    const auto at = lo - st.begin - first;
    devices::nn::update_running_stats(b.momentum, hi - lo, params.data() + at,
                                      grad.data() + at, out.data() + at);
  }
}

// Makes `next` the current version.
void publish_version(param_shard_state& st, devices::tensor next) {
  if (st.spares.size() < 3)
    st.spares.push_back(st.params);
  st.prev = std::move(st.params);
  st.params = std::move(next);
  ++st.version;
}

// Every snapshot_every versions: the state, to the coordinator's store.
// The optimizer state is updated in place, so it goes as a copy; published
// parameters are never written again and go as they are.
// `now`: whatever the version (the coordinator asks after a worker's
// restart: that worker holds no gradients from before it).
void maybe_snapshot(caf::stateful_actor<param_shard_state>* self,
                    bool now = false) {
  auto& st = self->state;
  if (!st.coordinator || st.spec.exchange_only || st.restoring ||
      st.version == st.snapshotted ||
      (!now && st.version % st.spec.snapshot_every != 0))
    return;
  st.snapshotted = st.version;
  shard_state_msg m;
  m.shard = st.index;
  m.version = st.version;
  m.params = st.params;
  for (auto& t : st.opt_state) {
    auto copy = devices::tensor::empty({st.size});
    devices::cpu().copy(t, copy);
    m.optimizer_state.push_back(std::move(copy));
  }
  m.ledger = st.last_seq;
  tell(self, st.coordinator, snapshot_atom::value, std::move(m));
}

void apply(caf::stateful_actor<param_shard_state>* self,
           const devices::tensor& grad) {
  auto& st = self->state;
  auto next = fresh_buffer(st);
  update(st, 0, st.size, grad, next);
  publish_version(st, std::move(next));
  maybe_snapshot(self);
}

// The sum over ranks [lo, hi) of chunk c, completing the canonical tree
// from the parts the aggregators summed.
devices::tensor complete_tree(pending_step& p, std::int32_t lo, std::int32_t hi,
                              std::size_t c) {
  auto it = p.parts.find({lo, hi});
  if (it != p.parts.end())
    return it->second.chunk[c];
  const auto mid = static_cast<std::int32_t>(runtime::tree_split(lo, hi));
  auto a = complete_tree(p, lo, mid, c);
  auto b = complete_tree(p, mid, hi, c);
  // Partial sums from aggregators may be shared buffers: sum into our own.
  auto out = devices::tensor::empty({a.numel()});
  devices::cpu().add(a, b, out);
  return out;
}

// Sends the chunks [c0, c1) of the next version to every aggregator.
void publish_chunks(caf::stateful_actor<param_shard_state>* self,
                    std::int64_t c0, std::int64_t c1) {
  auto& st = self->state;
  const auto first = c0 * chunk_elements;
  const auto last = std::min(st.size, c1 * chunk_elements);
  params_msg m;
  m.shard = st.index;
  m.version = st.version + 1;
  m.offset = st.begin + first;
  m.values =
      last - first == st.size ? st.next : st.next.slice(first, last - first);
  m.min_clock = m.version;
  for (auto& a : st.aggregators)
    send_slices(self, a, m);
}

// Applies every chunk of the current step that all ranks have delivered,
// and publishes each run of newly applied chunks at once: the way back
// starts while later chunks are still on their way in.
// optimizer.clip_norm: the sums of squares of this shard's segments of the
// step's summed gradient (each in element order, in double), to the
// coordinator, which sums every shard's segments in model order: the same
// norm however the model is partitioned.
std::vector<double> segment_squares(const param_shard_state& st,
                                    const pending_step& p) {
  std::vector<double> out;
  std::size_t k = 0;
  double acc = 0;
  for (std::int64_t c = 0; c < st.chunks; ++c) {
    const auto& t = p.sums[static_cast<std::size_t>(c)];
    const float* v = t.data();
    const auto first = c * chunk_elements;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      while (first + i >= st.segments[k + 1]) {
        if (st.segment_counts[k])
          out.push_back(acc);
        acc = 0;
        ++k;
      }
      acc += static_cast<double>(v[i]) * static_cast<double>(v[i]);
    }
  }
  for (; k + 1 < st.segments.size(); ++k) {
    if (st.segment_counts[k])
      out.push_back(acc);
    acc = 0;
  }
  return out;
}

// The gradient times the step's clip scale, but for running statistics.
devices::tensor scaled(const param_shard_state& st, std::int64_t first,
                       const devices::tensor& sum, float scale) {
  if (scale == 1.0f)
    return sum;
  auto out = devices::tensor::empty({sum.numel()});
  const float* in = sum.data();
  float* o = out.data();
  for (std::int64_t i = 0; i < sum.numel(); ++i)
    o[i] = in[i] * scale;
  for (const auto& b : st.running) {
    const auto lo = std::max(b.offset, st.begin + first);
    const auto hi =
        std::min(b.offset + b.size(), st.begin + first + sum.numel());
    for (auto i = lo; i < hi; ++i)
      o[i - st.begin - first] = in[i - st.begin - first];
  }
  return out;
}

void apply_ready_chunks(caf::stateful_actor<param_shard_state>* self) {
  auto& st = self->state;
  auto it = st.pending.find(st.version);
  if (it == st.pending.end() || !may_apply(st))
    return;
  auto& p = it->second;
  if (st.spec.clip_norm > 0 && p.scale < 0) {
    // Clipping needs the global norm first: the whole step, then the
    // coordinator's answer.
    for (std::int64_t c = 0; c < st.chunks; ++c)
      if (p.leaves[static_cast<std::size_t>(c)] != st.spec.workers)
        return;
    if (!p.norm_sent) {
      p.sums.resize(static_cast<std::size_t>(st.chunks));
      for (std::int64_t c = 0; c < st.chunks; ++c)
        p.sums[static_cast<std::size_t>(c)] =
            complete_tree(p, 0, static_cast<std::int32_t>(st.spec.workers),
                          static_cast<std::size_t>(c));
      p.norm_sent = true;
      if (st.coordinator)
        tell(self, st.coordinator, clip_atom::value, st.version, st.index,
             segment_squares(st, p));
    }
    return;
  }
  std::int64_t run_begin = -1;
  for (std::int64_t c = 0; c <= st.chunks; ++c) {
    const bool ready = c < st.chunks &&
                       !p.applied[static_cast<std::size_t>(c)] &&
                       p.leaves[static_cast<std::size_t>(c)] == st.spec.workers;
    if (ready) {
      if (!st.next.defined())
        st.next = fresh_buffer(st);
      const auto first = c * chunk_elements;
      const auto n = std::min(chunk_elements, st.size - first);
      auto sum =
          p.sums.empty()
              ? complete_tree(p, 0, static_cast<std::int32_t>(st.spec.workers),
                              static_cast<std::size_t>(c))
              : scaled(st, first, p.sums[static_cast<std::size_t>(c)], p.scale);
      update(st, first, n, sum,
             n == st.size ? st.next : st.next.slice(first, n));
      p.applied[static_cast<std::size_t>(c)] = true;
      if (run_begin < 0)
        run_begin = c;
    } else if (run_begin >= 0) {
      publish_chunks(self, run_begin, c);
      run_begin = -1;
    }
  }
  if (std::count(p.applied.begin(), p.applied.end(), false) > 0)
    return;
  st.pending.erase(it);
  publish_version(st, std::move(st.next));
  st.next = devices::tensor{};
  maybe_snapshot(self);
  publish_milestones(self);
  apply_ready_chunks(self); // a later step may be complete already
}

void on_sync_grad(caf::stateful_actor<param_shard_state>* self, grad_msg& g) {
  auto& st = self->state;
  if (g.step < st.version)
    return; // already applied
  auto& p = st.pending[g.step];
  if (p.leaves.empty()) {
    p.leaves.assign(static_cast<std::size_t>(st.chunks), 0);
    p.applied.assign(static_cast<std::size_t>(st.chunks), false);
  }
  auto& part = p.parts[std::make_pair(g.lo, g.hi)];
  if (part.got.empty()) {
    part.chunk.resize(static_cast<std::size_t>(st.chunks));
    part.got.assign(static_cast<std::size_t>(st.chunks), 0);
  }
  const auto n = g.values.numel();
  const auto first = g.offset - st.begin;
  const auto c0 = first / chunk_elements;
  const auto c1 = (first + n + chunk_elements - 1) / chunk_elements;
  auto chunk_size = [&](std::int64_t c) {
    return std::min(chunk_elements, st.size - c * chunk_elements);
  };
  // A duplicate (a replayed message) must not count twice.
  for (auto c = c0; c < c1; ++c)
    if (part.got[static_cast<std::size_t>(c)] >= chunk_size(c))
      return;
  for (auto c = c0; c < c1; ++c) {
    const auto i = static_cast<std::size_t>(c);
    const auto lo = std::max(first, c * chunk_elements);
    const auto hi = std::min(first + n, (c + 1) * chunk_elements);
    if (hi - lo == chunk_size(c)) {
      // The whole chunk in this message: keep a view, no copy.
      part.chunk[i] = hi - lo == n ? std::move(g.values)
                                   : g.values.slice(lo - first, hi - lo);
    } else {
      // Part of a chunk: assemble by offset.
      if (!part.chunk[i].defined())
        part.chunk[i] = devices::tensor::empty({chunk_size(c)});
      auto dst = part.chunk[i].slice(lo - c * chunk_elements, hi - lo);
      devices::cpu().copy(g.values.slice(lo - first, hi - lo), dst);
    }
    part.got[i] += hi - lo;
    if (part.got[i] == chunk_size(c))
      p.leaves[i] += g.hi - g.lo;
  }
  apply_ready_chunks(self);
}

// async/ssp: the current parameters for a restarted worker at `step`.
void send_fetched(caf::stateful_actor<param_shard_state>* self,
                  std::int32_t worker, std::int64_t step,
                  const worker_handle& to) {
  auto m = make_msg(self->state);
  m.target = worker;
  m.tag = step;
  send_slices(self, to, std::move(m));
}

void release_waiting(caf::stateful_actor<param_shard_state>* self) {
  auto& st = self->state;
  const auto slowest = *std::min_element(st.clock.begin(), st.clock.end());
  auto& f = st.fetches;
  for (auto it = f.begin(); it != f.end();) {
    if (st.rule.may_go_on(it->step, slowest)) {
      send_fetched(self, it->worker, it->step, it->to);
      it = f.erase(it);
    } else {
      ++it;
    }
  }
  auto& w = st.waiting;
  for (auto it = w.begin(); it != w.end();) {
    // Worker *it has done clock[*it] steps; its next step may start only
    // while the slowest worker is at most `staleness` steps behind it.
    if (st.rule.may_go_on(st.clock[static_cast<std::size_t>(*it)], slowest)) {
      answer(self, *it);
      it = w.erase(it);
    } else {
      ++it;
    }
  }
}

// Applies worker w's gradient `seq` (the next one the ledger expects) and
// any of its later ones that came early.
void apply_async(caf::stateful_actor<param_shard_state>* self, std::int32_t w,
                 std::int64_t seq, devices::tensor grad) {
  auto& st = self->state;
  const auto wi = static_cast<std::size_t>(w);
  for (;;) {
    st.last_seq[wi] = seq;
    apply(self, grad);
    ++st.clock[wi];
    auto next = st.early.find({w, seq + 1});
    if (next == st.early.end())
      break;
    grad = std::move(next->second);
    st.early.erase(next);
    ++seq;
  }
  if (st.rule.holds_workers()) {
    st.waiting.push_back(w);
    release_waiting(self);
  } else {
    answer(self, w);
  }
  publish_milestones(self);
}

void on_async_grad(caf::stateful_actor<param_shard_state>* self, grad_msg& g) {
  auto& st = self->state;
  const auto w = static_cast<std::size_t>(g.worker);
  if (g.seq <= st.last_seq[w]) {
    // Applied already (a worker redoing a step after a restart, or its
    // replay to a restarted aggregator): dropped, and answered, since the
    // sender waits for an answer. At most once per (worker, seq).
    if (g.offset + g.values.numel() == st.begin + st.size) {
      ++st.duplicates;
      if (st.coordinator)
        tell(self, st.coordinator, duplicate_atom::value, st.index, g.worker,
             g.seq);
      if (g.seq == st.last_seq[w] &&
          std::find(st.waiting.begin(), st.waiting.end(), g.worker) ==
              st.waiting.end()) {
        if (st.rule.holds_workers()) {
          st.waiting.push_back(g.worker);
          release_waiting(self);
        } else {
          answer(self, g.worker);
        }
      }
    }
    return;
  }
  devices::tensor grad;
  if (g.values.numel() == st.size) {
    grad = std::move(g.values);
  } else {
    // Chunks of one gradient from another node, assembled by offset.
    auto& part = st.incoming[st.pending_key(g)];
    if (!part.values.defined())
      part.values = devices::tensor::empty({st.size});
    auto dst = part.values.slice(g.offset - st.begin, g.values.numel());
    devices::cpu().copy(g.values, dst);
    part.received += g.values.numel();
    if (part.received < st.size)
      return;
    grad = std::move(part.values);
    st.incoming.erase(st.pending_key(g));
  }
  if (g.seq > st.last_seq[w] + 1) {
    st.early[{g.worker, g.seq}] = std::move(grad);
    return;
  }
  apply_async(self, g.worker, g.seq, std::move(grad));
}

caf::behavior param_shard(caf::stateful_actor<param_shard_state>* self,
                          job_spec spec, std::int32_t index) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.rule = update_rule(st.spec);
  st.index = index;
  if (refuse_index(self, role::param_shard, index, st.spec.partitions))
    return {};
  const auto layout =
      devices::nn::param_layout(st.spec.model_input(), st.spec.layers);
  const auto total = devices::nn::param_count(layout);
  st.begin = st.spec.shard_begin(index, total);
  st.size = st.spec.shard_begin(index + 1, total) - st.begin;
  st.params = devices::tensor::empty({st.size});
  for (const auto& b : layout)
    if (b.role == devices::nn::param_role::running &&
        b.offset < st.begin + st.size && b.offset + b.size() > st.begin)
      st.running.push_back(b);
  st.chunks = std::max<std::int64_t>(1, (st.size + chunk_elements - 1) /
                                            chunk_elements);
  if (st.spec.clip_norm > 0) {
    for (auto s : devices::nn::block_starts(layout))
      if (s >= st.begin && s < st.begin + st.size)
        st.segments.push_back(s - st.begin);
    if (st.segments.empty() || st.segments.front() != 0)
      st.segments.insert(st.segments.begin(), 0);
    st.segments.push_back(st.size);
    for (std::size_t k = 0; k + 1 < st.segments.size(); ++k) {
      const auto at = st.begin + st.segments[k];
      bool running = false;
      for (const auto& b : st.running)
        running = running || (at >= b.offset && at < b.offset + b.size());
      st.segment_counts.push_back(!running);
    }
  }
  devices::nn::init_params(layout, st.spec.seed, st.begin, st.size,
                           st.params.data());
  for (int i = 0; i < devices::optimizer_state_count(st.spec.optimizer.kind);
       ++i)
    st.opt_state.push_back(devices::tensor::zeros({st.size}));
  if (!st.rule.sums_workers()) {
    st.clock.assign(static_cast<std::size_t>(st.spec.workers), 0);
    st.last_seq.assign(static_cast<std::size_t>(st.spec.workers), -1);
  }
  st.restoring = st.spec.incarnation > 0;
  st.controlled = !st.spec.controller.type.empty();
  return behavior_of<param_shard_inbox>(
      [=](wire_atom, std::vector<caf::actor> aggregators,
          std::vector<std::int32_t> aggregator_of_worker, caf::actor evaluator,
          caf::actor coordinator) {
        // First wiring, or rewiring after a peer was restarted (a restarted
        // aggregator is sent the current version by republish_atom).
        auto& st = self->state;
        const bool first = !st.coordinator;
        st.aggregators = handles_to<aggregator_inbox>(std::move(aggregators));
        st.aggregator_of_worker = std::move(aggregator_of_worker);
        st.evaluator = static_cast<bool>(evaluator);
        st.coordinator = coordinator_handle{std::move(coordinator)};
        if (first)
          broadcast(self); // version 0, or the restored one
        if (first && st.controlled)
          tell(self, st.coordinator, control_atom::value, st.index);
        if (first && !st.rule.sums_workers() && st.spec.incarnation > 0) {
          // Restored: gradients applied before this wiring went unanswered.
          // Answer every worker (an answer carries the step it is for; a
          // worker at another step ignores it).
          for (std::int32_t w = 0; w < st.spec.workers; ++w) {
            if (!st.rule.holds_workers())
              answer(self, w);
            else if (std::find(st.waiting.begin(), st.waiting.end(), w) ==
                     st.waiting.end())
              st.waiting.push_back(w);
          }
          if (st.rule.holds_workers())
            release_waiting(self);
        }
      },
      [=](wire_atom) {
        // A barrier: the wiring sent before this is in place.
        return true;
      },
      [=](control_atom, std::vector<double>& scales) {
        // Every decision so far (a restarted shard asks for them).
        auto& st = self->state;
        if (scales.size() <= st.decided.size())
          return;
        st.decided = std::move(scales);
        if (st.rule.sums_workers())
          apply_ready_chunks(self);
      },
      [=](grad_msg& g) {
        auto& st = self->state;
        if (g.offset < st.begin ||
            g.offset + g.values.numel() > st.begin + st.size || g.lo < 0 ||
            g.hi > st.spec.workers || g.lo >= g.hi || g.step < 0 ||
            (st.rule.sums_workers() && g.step > st.version + max_steps_ahead) ||
            (!st.rule.sums_workers() &&
             (g.worker < 0 || g.worker >= st.spec.workers || g.seq < 0)))
          return; // not for this shard, or not from a worker of this job
        if (st.restoring) {
          st.held.push_back(std::move(g));
          return;
        }
        if (st.rule.sums_workers())
          on_sync_grad(self, g);
        else
          on_async_grad(self, g);
      },
      [=](restore_atom, shard_state_msg& m) {
        // Restarted: the state of the newest good snapshot (version 0, the
        // seeded start, when there is none).
        auto& st = self->state;
        if (m.version > 0) {
          st.params = std::move(m.params);
          st.opt_state = std::move(m.optimizer_state);
          st.version = m.version;
          st.snapshotted = m.version;
          if (!st.rule.sums_workers() &&
              m.ledger.size() == st.last_seq.size()) {
            st.last_seq = m.ledger;
            for (std::size_t w = 0; w < st.clock.size(); ++w)
              st.clock[w] = st.last_seq[w] + 1; // seq counts from 0
          }
          st.epochs_sent = std::min(st.spec.epochs,
                                    st.version / st.rule.versions_per_epoch());
        }
        st.restoring = false;
        auto held = std::move(st.held);
        st.held.clear();
        for (auto& g : held)
          if (st.rule.sums_workers())
            on_sync_grad(self, g);
          else
            on_async_grad(self, g);
      },
      [=](version_atom) { return self->state.version; },
      [=](version_atom, std::int32_t worker) -> std::int64_t {
        // async/ssp: the next gradient of `worker` this shard expects.
        auto& st = self->state;
        if (worker < 0 ||
            static_cast<std::size_t>(worker) >= st.last_seq.size())
          return st.version;
        return st.last_seq[static_cast<std::size_t>(worker)] + 1;
      },
      [=](snapshot_atom) { maybe_snapshot(self, true); },
      [=](clip_atom, std::int64_t step, float scale) {
        // optimizer.clip_norm: the scale of step `step`'s gradient.
        auto& st = self->state;
        auto it = st.pending.find(step);
        if (it == st.pending.end() || it->second.scale >= 0)
          return;
        it->second.scale = scale;
        if (step == st.version)
          apply_ready_chunks(self);
      },
      [=](snapshot_atom, done_atom) -> std::int64_t {
        // The job is done: its final state, to the store (the version the
        // coordinator waits to see durable).
        maybe_snapshot(self, true);
        return self->state.version;
      },
      [=](fetch_atom, std::int64_t from, std::int32_t worker,
          const caf::actor& to) {
        // A restarted worker at step `from`: every version >= from we hold.
        auto& st = self->state;
        if (st.restoring)
          return;
        auto m = make_msg(st);
        m.target = worker;
        if (!st.rule.sums_workers()) {
          // The current parameters, for its step `from`; in ssp mode only
          // once the slowest worker is close enough.
          if (st.rule.holds_workers()) {
            st.fetches.push_back({worker, from, worker_handle{to}});
            release_waiting(self);
          } else {
            send_fetched(self, worker, from, worker_handle{to});
          }
          return;
        }
        if (st.prev.defined() && st.version - 1 >= from) {
          auto old = m;
          old.version = st.version - 1;
          old.values = st.prev;
          send_slices(self, worker_handle{to}, std::move(old));
        }
        if (st.version >= from)
          send_slices(self, worker_handle{to}, std::move(m));
      },
      [=](republish_atom, const caf::actor& aggregator) {
        // A restarted aggregator: the current version for its workers.
        auto& st = self->state;
        if (!st.restoring)
          send_slices(self, aggregator_handle{aggregator}, make_msg(st));
      });
}

} // namespace

void register_param_shard(caf::actor_system_config& cfg) {
  cfg.add_actor_type(name_of(role::param_shard),
                     spawn_with_faults<role::param_shard, param_shard>);
}

void recover_param_shard(supervisor& sup, std::int32_t index,
                         const caf::actor& h) {
  const auto gen = sup.generation();
  const auto name = to_string(actor_id{role::param_shard, index});
  ask(sup.self(), snapshot_store_handle{sup.store()}, std::chrono::seconds(30),
      load_atom::value, index)
      .then(
          [=, &sup, hold = sup.recovery_hold()](
              shard_state_msg& m, std::vector<std::string>& problems) {
            for (auto& why : problems)
              sup.job().info(fmt::format("{}: snapshot refused, falling back "
                                         "to an older one: {}",
                                         name, why));
            if (sup.stale(gen))
              return; // the job rolled back meanwhile
            auto* self = sup.self();
            const auto& t = sup.topo();
            const auto from = m.version;
            // Where each worker's replay begins.
            const update_rule rule(sup.spec());
            std::vector<std::int64_t> replay_from(t.workers.size());
            for (std::size_t r = 0; r < replay_from.size(); ++r)
              replay_from[r] =
                  rule.replay_from(from, m.ledger, r, replay_from.size());
            std::string lacking;
            for (std::size_t r = 0; r < replay_from.size(); ++r)
              if (replay_from[r] < sup.first_step()[r])
                lacking = to_string(
                    actor_id{role::worker, static_cast<std::int32_t>(r)});
            if (!lacking.empty()) {
              // The steps since `from` cannot be replayed: go back to a
              // checkpoint from which nothing needs replaying.
              sup.rollback(fmt::format(
                  "{} can only be restored to version {}, but {} was "
                  "restarted since and kept no gradients from before its "
                  "restart",
                  name, from, lacking));
              return;
            }
            tell(self, param_shard_handle{h}, restore_atom::value,
                 std::move(m));
            wire_shard(self, t, static_cast<std::size_t>(index));
            for (std::size_t a = 0; a < t.aggregators.size(); ++a)
              wire_aggregator(self, t, a);
            for (std::size_t r = 0; r < t.workers.size(); ++r) {
              wire_worker(self, t, r);
              tell(self, worker_at(t, r), replay_atom::value, index,
                   replay_from[r]);
            }
            sup.job().info(fmt::format("{} restored from version {}; the "
                                       "workers replay the steps since",
                                       name, from));
          },
          [=, &sup, hold = sup.recovery_hold()](caf::error& err) {
            if (sup.stale(gen))
              return;
            sup.job().fail(
                fmt::format("recovering {}: the snapshot store did not "
                            "answer: {}",
                            name, sup.self()->system().render(err)));
          });
}

} // namespace troupe::actors

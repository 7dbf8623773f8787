// stage: a user's data stage (actors/stages.hpp) between data shard d and
// its workers; stage:(position * shards + d). Downstream (its workers, or
// the next stage) it is their data shard: it takes their credits and
// resubscriptions and hands them upstream as its own. Upstream it is their
// worker: it takes each batch, transforms it, and sends it on.
//
// It keeps, per worker, the step of the next batch to send on and the
// credits upstream owes: all it needs to resubscribe for its workers when
// what feeds it is new (a restarted data shard or stage). A batch that is
// not the next one of its worker (served again after a resubscription) is
// dropped, so each goes on once and in order. Its output is a function of
// the batch and (seed, epoch, step, worker, position): a restarted stage
// sends exactly what the lost one would have.
//
// A stage that keeps state (data_stage::keeps_state) has an instance per
// worker and epoch, fed that worker's batches of the epoch in step order,
// each once. To send a batch it has not the state for (a restart of the
// worker, of this stage or of what feeds it, a rollback), it makes a fresh
// instance and has upstream serve the epoch again from its first step:
// those before the one wanted rebuild the state and are not sent on.
#include "actors/faults.hpp"
#include "actors/protocol.hpp"
#include "actors/stages.hpp"
#include "actors/supervisor.hpp"
#include "actors/wiring.hpp"

#include <fmt/format.h>

#include <map>

namespace troupe::actors {

namespace {

struct downstream {
  caf::actor handle;
  std::int64_t next = 0;    // global step of the next batch to send on
  std::int64_t credits = 0; // batches it may still be sent
  // A stage that keeps state: this worker's instance, made for epoch
  // `epoch` (0-based) and fed its steps before `fed` (fed <= next).
  std::unique_ptr<stages::data_stage> own;
  std::int64_t epoch = -1;
  std::int64_t fed = 0;
};

struct stage_state {
  job_spec spec;
  std::int32_t index = 0;
  std::int32_t shard = 0;
  std::int32_t position = 0;
  std::unique_ptr<stages::data_stage> impl; // shared by workers when stateless
  bool keeps_state = false;
  caf::actor upstream;
  std::map<std::int32_t, downstream> clients;
};

using self_ptr = caf::stateful_actor<stage_state>*;

void fail(self_ptr self, const std::string& why) {
  self->quit(caf::make_error(
      caf::sec::runtime_error,
      fmt::format("stage:{} ({}): {}", self->state.index,
                  self->state.spec
                      .stages[static_cast<std::size_t>(self->state.position)]
                      .type,
                  why)));
}

caf::actor me(self_ptr self) {
  return caf::actor_cast<caf::actor>(self);
}

std::unique_ptr<stages::data_stage> make(const stage_state& st) {
  const auto& s = st.spec.stages[static_cast<std::size_t>(st.position)];
  return stages::make_data_stage(
      s.type, stages::params(fmt::format("stage[{}]", st.position), s.params),
      samples_of(st.spec));
}

// A stage that keeps state is to give worker c the batches from `from` on:
// its instance goes on if it is of that epoch and not past `from`, else a
// fresh one starts at the epoch's first step (and is fed the steps up to
// `from` again).
void rewind(const stage_state& st, downstream& c, std::int64_t from) {
  const auto epoch = from / st.spec.steps_per_epoch;
  if (c.own && c.epoch == epoch && c.fed <= from)
    return;
  c.own = make(st);
  c.epoch = epoch;
  c.fed = epoch * st.spec.steps_per_epoch;
}

// What upstream is to serve c: from the next step to send on, or, with
// state, from the next its instance takes (those before `next` are fed
// again and not sent on), with credits for both.
void subscribe_upstream(self_ptr self, std::int32_t worker,
                        const downstream& c) {
  auto& st = self->state;
  if (!st.upstream)
    return;
  const auto from = st.keeps_state ? c.fed : c.next;
  tell(self, data_shard_handle{st.upstream}, resubscribe_atom::value, worker,
       from, c.credits + (c.next - from), me(self));
}

// Runs the user's transform on b; false when the stage failed (it quit).
bool transform(self_ptr self, stages::data_stage& impl, batch_msg& b) {
  auto& st = self->state;
  stages::batch_context ctx;
  ctx.seed = st.spec.seed;
  ctx.epoch = b.epoch;
  ctx.step = b.step;
  ctx.worker = b.worker;
  ctx.shard = st.shard;
  ctx.position = st.position;
  const auto x_shape = b.x.shape();
  const auto y_shape = b.y.shape();
  try {
    impl.transform(b.x, b.y, ctx);
  } catch (const std::exception& e) {
    fail(self, fmt::format("transform of epoch {} step {} worker {} failed: {}",
                           b.epoch + 1, b.step, b.worker, e.what()));
    return false;
  }
  if (b.x.shape() != x_shape || b.y.shape() != y_shape) {
    fail(self, fmt::format("transform changed the batch's shapes ({} -> {}, "
                           "{} -> {}); a data stage keeps them",
                           devices::to_string(x_shape),
                           devices::to_string(b.x.shape()),
                           devices::to_string(y_shape),
                           devices::to_string(b.y.shape())));
    return false;
  }
  return true;
}

void on_batch(self_ptr self, batch_msg& b) {
  auto& st = self->state;
  const auto step = b.epoch * st.spec.steps_per_epoch + b.step;
  auto it = st.clients.find(b.worker);
  if (it == st.clients.end() || !it->second.handle)
    return; // for no worker of ours
  auto& c = it->second;
  if (!st.keeps_state) {
    if (step != c.next)
      return; // served again after a resubscription
    if (!transform(self, *st.impl, b))
      return;
  } else {
    // Each step once, in order, into the instance of its epoch.
    if (step != c.fed || !c.own)
      return;
    if (b.epoch != c.epoch) {
      try {
        c.own = make(st);
      } catch (const std::exception& e) {
        fail(self, e.what());
        return;
      }
      c.epoch = b.epoch;
    }
    if (!transform(self, *c.own, b))
      return;
    ++c.fed;
    if (step < c.next)
      return; // fed again to rebuild its state; sent on before
  }
  ++c.next;
  --c.credits;
  tell(self, worker_handle{c.handle}, std::move(b));
}

caf::behavior stage(self_ptr self, job_spec spec, std::int32_t index) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.index = index;
  const auto count =
      static_cast<std::int64_t>(st.spec.stages.size()) * st.spec.shards;
  if (refuse_index(self, role::stage, index, count))
    return {};
  st.shard = static_cast<std::int32_t>(index % st.spec.shards);
  st.position = static_cast<std::int32_t>(index / st.spec.shards);
  try {
    st.impl = make(st);
    st.keeps_state = st.impl->keeps_state();
  } catch (const std::exception& e) {
    // Unknown here (a node started without the plugin) or bad settings.
    self->quit(caf::make_error(caf::sec::invalid_argument,
                               fmt::format("stage:{}: {}", index, e.what())));
    return {};
  }
  return behavior_of<stage_inbox>(
      [=](wire_atom, caf::actor up) {
        auto& st = self->state;
        if (up == st.upstream)
          return;
        // New upstream: it starts from where each worker (or, with state,
        // its instance) is.
        st.upstream = std::move(up);
        for (auto& [rank, c] : st.clients)
          subscribe_upstream(self, rank, c);
      },
      [=](credit_atom, std::int32_t worker, std::int64_t taken, std::int64_t n,
          caf::actor who) {
        auto& st = self->state;
        if (worker < 0 || worker >= st.spec.workers || n < 0)
          return;
        auto& c = st.clients[worker];
        if (!c.handle)
          c.handle = std::move(who);
        c.credits += n;
        if (st.upstream)
          tell(self, data_shard_handle{st.upstream}, credit_atom::value, worker,
               taken, n, me(self));
      },
      [=](resubscribe_atom, std::int32_t worker, std::int64_t from,
          std::int64_t n, caf::actor who) {
        auto& st = self->state;
        if (worker < 0 || worker >= st.spec.workers || from < 0 || n < 0)
          return;
        auto& c = st.clients[worker];
        c.handle = std::move(who);
        c.next = from;
        c.credits = n;
        if (st.keeps_state) {
          try {
            rewind(st, c, from);
          } catch (const std::exception& e) {
            fail(self, e.what());
            return;
          }
        }
        subscribe_upstream(self, worker, c);
      },
      [=](batch_msg& b) { on_batch(self, b); });
}

} // namespace

void register_stage(caf::actor_system_config& cfg) {
  cfg.add_actor_type(name_of(role::stage),
                     spawn_with_faults<role::stage, stage>);
}

void recover_stage(supervisor& sup, std::int32_t index, const caf::actor&) {
  const auto& t = sup.topo();
  const auto k = static_cast<std::size_t>(index);
  const auto shards = t.data_shards.size();
  wire_stage(sup.self(), t, k);
  if (k + shards < t.stages.size()) {
    wire_stage(sup.self(), t, k + shards); // the next stage resubscribes
    return;
  }
  const auto d = static_cast<std::int32_t>(k % shards);
  for (std::size_t r = 0; r < t.workers.size(); ++r)
    if (t.data_shard_of_worker[r] == d)
      wire_worker(sup.self(), t, r);
}

} // namespace troupe::actors

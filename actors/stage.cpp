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
  std::int64_t credits = 0; // batches upstream still owes it
};

struct stage_state {
  job_spec spec;
  std::int32_t index = 0;
  std::int32_t shard = 0;
  std::int32_t position = 0;
  std::unique_ptr<stages::data_stage> impl;
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

void on_batch(self_ptr self, batch_msg& b) {
  auto& st = self->state;
  const auto step = b.epoch * st.spec.steps_per_epoch + b.step;
  auto it = st.clients.find(b.worker);
  if (it == st.clients.end() || step != it->second.next || !it->second.handle)
    return; // served again after a resubscription, or for no worker of ours
  auto& c = it->second;
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
    st.impl->transform(b.x, b.y, ctx);
  } catch (const std::exception& e) {
    fail(self, fmt::format("transform of epoch {} step {} worker {} failed: {}",
                           b.epoch + 1, b.step, b.worker, e.what()));
    return;
  }
  if (b.x.shape() != x_shape || b.y.shape() != y_shape) {
    fail(self, fmt::format("transform changed the batch's shapes ({} -> {}, "
                           "{} -> {}); a data stage keeps them",
                           devices::to_string(x_shape),
                           devices::to_string(b.x.shape()),
                           devices::to_string(y_shape),
                           devices::to_string(b.y.shape())));
    return;
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
  const auto& s = st.spec.stages[static_cast<std::size_t>(st.position)];
  try {
    st.impl = stages::make_data_stage(
        s.type, stages::params(fmt::format("stage[{}]", st.position), s.params),
        samples_of(st.spec));
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
        // New upstream: it starts from where each worker is.
        st.upstream = std::move(up);
        for (auto& [rank, c] : st.clients)
          tell(self, data_shard_handle{st.upstream}, resubscribe_atom::value,
               rank, c.next, c.credits, me(self));
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
        if (st.upstream)
          tell(self, data_shard_handle{st.upstream}, resubscribe_atom::value,
               worker, from, n, me(self));
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

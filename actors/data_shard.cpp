// data_shard: owns rows [begin, end) of the training set and serves each of
// its workers the batches of (epoch, step) in order, one per credit. The
// shard keeps the credits; a detached helper thread gathers the rows, so
// that work can run on whichever core is idle instead of taking turns with
// the workers on the node's scheduler threads.
#include "actors/faults.hpp"
#include "actors/protocol.hpp"
#include "actors/supervisor.hpp"
#include "actors/wiring.hpp"

#include "data/sampler.hpp"

#include <algorithm>
#include <cstring>
#include <map>

namespace troupe::actors {

namespace {

struct client {
  caf::actor handle; // the worker (the helper sends its batches there)
  std::int64_t credits = 0;
  std::int64_t next = 0; // global step of the next batch to send
};

struct data_shard_state {
  job_spec spec;
  std::int32_t index = 0;
  caf::actor maker; // once the data is loaded
  std::map<std::int32_t, client> clients;
};

struct maker_state {
  job_spec spec;
  std::int32_t index = 0;
  dataset_ptr data;
  std::unique_ptr<data::batch_plan> plan;
  std::map<std::int64_t, std::vector<std::int64_t>> perms; // epoch -> order
};

const std::vector<std::int64_t>& permutation(maker_state& st,
                                             std::int64_t epoch) {
  auto it = st.perms.find(epoch);
  if (it == st.perms.end()) {
    // Keep at most two epochs: workers of one shard are at most one apart.
    while (st.perms.size() >= 2)
      st.perms.erase(st.perms.begin());
    it = st.perms.emplace(epoch, st.plan->permutation(st.index, epoch)).first;
  }
  return it->second;
}

batch_msg make_batch(maker_state& st, std::int32_t worker,
                     std::int64_t global_step) {
  const auto& plan = *st.plan;
  const auto& ds = *st.data;
  batch_msg b;
  b.epoch = global_step / st.spec.steps_per_epoch;
  b.step = global_step % st.spec.steps_per_epoch;
  b.worker = worker;
  const auto n = plan.local_batch();
  const auto& perm = permutation(st, b.epoch);
  const auto first = plan.position(b.step, worker);
  const auto row0 = plan.begin(st.index);
  const auto f = ds.features;
  const auto ty = ds.y.numel() / ds.samples; // target values per row
  b.x = devices::tensor::empty({n, f});
  b.y = ds.classes > 0 ? devices::tensor::empty({n})
                       : devices::tensor::empty({n, ty});
  // Rows are scattered over the data set: fetch a few ahead.
  constexpr std::int64_t ahead = 4;
  auto row_at = [&](std::int64_t i) {
    return row0 + perm[static_cast<std::size_t>(first + i)];
  };
  for (std::int64_t i = 0; i < std::min(ahead, n); ++i)
    data::prefetch_row(ds, row_at(i));
  for (std::int64_t i = 0; i < n; ++i) {
    if (i + ahead < n)
      data::prefetch_row(ds, row_at(i + ahead));
    const auto row = row_at(i);
    data::copy_row(ds, row, b.x.data() + i * f);
    std::memcpy(b.y.data() + i * ty, ds.y.data() + row * ty,
                static_cast<std::size_t>(ty) * sizeof(float));
  }
  return b;
}

// Runs detached: (worker, global step, worker's handle) -> batch_msg to it.
caf::behavior maker(caf::stateful_actor<maker_state>* self, job_spec spec,
                    std::int32_t index, dataset_ptr data) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.index = index;
  st.data = std::move(data);
  st.plan = std::make_unique<data::batch_plan>(st.data->samples, st.spec.shards,
                                               st.spec.workers, st.spec.batch,
                                               st.spec.seed);
  return {
      [=](std::int32_t worker, std::int64_t step, const caf::actor& to) {
        tell(self, worker_handle{to}, make_batch(self->state, worker, step));
      },
  };
}

void pump(caf::stateful_actor<data_shard_state>* self) {
  auto& st = self->state;
  if (!st.maker)
    return;
  const auto total = st.spec.total_steps();
  for (auto& [rank, c] : st.clients)
    while (c.credits > 0 && c.next < total) {
      self->send(st.maker, rank, c.next, c.handle);
      --c.credits;
      ++c.next;
    }
}

caf::behavior data_shard(caf::stateful_actor<data_shard_state>* self,
                         job_spec spec, std::int32_t index) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.index = index;
  if (refuse_index(self, role::data_shard, index, st.spec.shards))
    return {};
  load_in_background(self, train_source(st.spec));
  return behavior_of<data_shard_inbox>(
      [=](loaded_atom, dataset_ptr ds) {
        auto& st = self->state;
        st.maker = self->spawn<caf::detached + caf::linked>(
            maker, st.spec, st.index, std::move(ds));
        pump(self);
      },
      [=](credit_atom, std::int32_t worker, std::int64_t, std::int64_t n,
          caf::actor who) {
        // A worker took the batch of a step (unused here: batches go out
        // in order from `next`) and asks for n more.
        auto& c = self->state.clients[worker];
        if (!c.handle)
          c.handle = std::move(who);
        c.credits += n;
        pump(self);
      },
      [=](resubscribe_atom, std::int32_t worker, std::int64_t from,
          std::int64_t n, caf::actor who) {
        // A worker (new, or whose data shard was restarted) wants the
        // batches from `from` on, with n credits. Batches are a pure
        // function of (seed, epoch, step, worker): nothing else to restore.
        auto& c = self->state.clients[worker];
        c.handle = std::move(who);
        c.next = from;
        c.credits = n;
        pump(self);
      });
}

} // namespace

void register_data_shard(caf::actor_system_config& cfg) {
  cfg.add_actor_type(name_of(role::data_shard),
                     spawn_with_faults<role::data_shard, data_shard>);
}

void recover_data_shard(supervisor& sup, std::int32_t index,
                        const caf::actor&) {
  const auto& t = sup.topo();
  if (!t.stages.empty()) {
    // Its first stage resubscribes for the workers it serves.
    wire_stage(sup.self(), t, static_cast<std::size_t>(index));
    return;
  }
  for (std::size_t r = 0; r < t.workers.size(); ++r)
    if (t.data_shard_of_worker[r] == index)
      wire_worker(sup.self(), t, r);
}

} // namespace troupe::actors

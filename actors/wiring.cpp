#include "actors/wiring.hpp"
#include "actors/protocol.hpp"

#include <algorithm>

namespace troupe::actors {

caf::actor* slot_of(topology& t, const actor_id& a) {
  auto at = [&](std::vector<caf::actor>& v) -> caf::actor* {
    return a.index >= 0 && static_cast<std::size_t>(a.index) < v.size()
               ? &v[static_cast<std::size_t>(a.index)]
               : nullptr;
  };
  switch (a.kind) {
    case role::worker:
      return at(t.workers);
    case role::data_shard:
      return at(t.data_shards);
    case role::stage:
      return at(t.stages);
    case role::param_shard:
      return at(t.param_shards);
    case role::aggregator:
      return at(t.aggregators);
    case role::evaluator:
      return &t.evaluator;
  }
  return nullptr;
}

std::size_t count_of(const topology& t, role r) {
  switch (r) {
    case role::worker:
      return t.workers.size();
    case role::data_shard:
      return t.data_shards.size();
    case role::stage:
      return t.stages.size();
    case role::param_shard:
      return t.param_shards.size();
    case role::aggregator:
      return t.aggregators.size();
    case role::evaluator:
      return t.evaluator ? 1 : 0;
  }
  return 0;
}

std::vector<caf::actor> workers_of(const topology& t, std::size_t a) {
  std::vector<caf::actor> local;
  for (std::size_t r = 0; r < t.workers.size(); ++r)
    if (t.aggregator_of_worker[r] == static_cast<std::int32_t>(a))
      local.push_back(t.workers[r]);
  return local;
}

caf::actor feed_of(const topology& t, std::int32_t d) {
  if (d < 0)
    return {};
  const auto shards = t.data_shards.size();
  const auto i = static_cast<std::size_t>(d);
  return t.stages.empty() ? t.data_shards[i]
                          : t.stages[t.stages.size() - shards + i];
}

void wire_stage(caf::event_based_actor* self, const topology& t,
                std::size_t k) {
  const auto shards = t.data_shards.size();
  tell(self, stage_handle{t.stages[k]}, wire_atom::value,
       k < shards ? t.data_shards[k] : t.stages[k - shards]);
}

void wire_shard(caf::event_based_actor* self, const topology& t,
                std::size_t p) {
  tell(self, param_shard_at(t, p), wire_atom::value, t.aggregators,
       t.aggregator_of_worker, t.evaluator, caf::actor_cast<caf::actor>(self));
}

void wire_aggregator(caf::event_based_actor* self, const topology& t,
                     std::size_t a) {
  tell(self, aggregator_at(t, a), wire_atom::value, workers_of(t, a),
       t.param_shards);
}

void wire_worker(caf::event_based_actor* self, const topology& t,
                 std::size_t r) {
  const auto d = t.data_shard_of_worker[r];
  const auto a = t.aggregator_of_worker[r];
  const bool alone = std::count(t.aggregator_of_worker.begin(),
                                t.aggregator_of_worker.end(), a) == 1;
  tell(self, worker_at(t, r), wire_atom::value,
       t.aggregators[static_cast<std::size_t>(a)], feed_of(t, d),
       caf::actor_cast<caf::actor>(self),
       alone ? t.param_shards : std::vector<caf::actor>{});
}

void wire_all(caf::event_based_actor* self, const topology& t) {
  for (std::size_t p = 0; p < t.param_shards.size(); ++p)
    wire_shard(self, t, p);
  for (std::size_t a = 0; a < t.aggregators.size(); ++a)
    wire_aggregator(self, t, a);
  for (std::size_t k = 0; k < t.stages.size(); ++k)
    wire_stage(self, t, k);
  for (std::size_t r = 0; r < t.workers.size(); ++r)
    wire_worker(self, t, r);
  if (t.evaluator)
    tell(self, evaluator_of(t), wire_atom::value,
         caf::actor_cast<caf::actor>(self));
}

} // namespace troupe::actors

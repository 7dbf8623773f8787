#pragma once
/// \file Who each actor of a job talks to, sent by the coordinator: at
/// start-up, and again to a restarted actor and its peers. Wiring is
/// idempotent. Heavy (CAF, messages.hpp): include from .cpp files only.
#include "actors/messages.hpp"

#include <cstddef>
#include <vector>

namespace troupe::actors {

/// The handle slot of actor `a` in `t`, or null when `t` has no such actor.
caf::actor* slot_of(topology& t, const actor_id& a);

/// How many actors of role `r` the job has (1 evaluator, or 0 without
/// test data).
std::size_t count_of(const topology& t, role r);

/// The workers aggregator `a` sums, in rank order.
std::vector<caf::actor> workers_of(const topology& t, std::size_t a);

/// What data shard `d`'s workers take batches from: its last data stage,
/// or the shard itself (null for d < 0).
caf::actor feed_of(const topology& t, std::int32_t d);

/// Data stage `k` (stage:k): what it takes batches from, the data shard
/// or the stage before it.
void wire_stage(caf::event_based_actor* self, const topology& t, std::size_t k);

/// Param shard `p`: the aggregators (and which worker each serves), the
/// evaluator, and `self` (the coordinator).
void wire_shard(caf::event_based_actor* self, const topology& t, std::size_t p);

/// Aggregator `a`: its workers and the param shards.
void wire_aggregator(caf::event_based_actor* self, const topology& t,
                     std::size_t a);

/// Worker `r`: its aggregator, its data shard, `self`, and the param shards
/// when it is alone on its aggregator (it sends its gradient to them itself).
void wire_worker(caf::event_based_actor* self, const topology& t,
                 std::size_t r);

/// Every actor of `t`.
void wire_all(caf::event_based_actor* self, const topology& t);

} // namespace troupe::actors

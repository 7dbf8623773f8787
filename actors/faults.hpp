#pragma once
/// \file Fault injection for tests and rehearsals, kept out of the roles:
/// `[[chaos]]` kills and `[testing]` slow workers.
///
/// A role is registered behind `with_faults<R, fn>`. When the job asks no
/// fault of an incarnation, the role's own behavior is used unchanged.
/// Otherwise a filter sits in front of it. The filter reads the step off
/// the messages the role receives, and at the planned step it kills the
/// actor as a crash would, or it paces the batches a slow worker gets.
/// The roles know nothing of it.
///
/// Heavy (CAF): include from the role .cpp files only.
#include "actors/job_spec.hpp"
#include "actors/roles.hpp"
#include "actors/update_rule.hpp"

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cstdint>
#include <utility>

namespace troupe::actors {

/// What the job's `[[chaos]]` and `[testing]` ask of one incarnation of one
/// actor, and what the filter needs to read steps off its messages.
struct fault_plan {
  actor_id who;
  /// Dies (exit reason kill) at this step, -1 never. Where "at a step" is:
  /// - a worker: when given the batch of that step, before computing it
  ///   (a batch given before training started: as it starts);
  /// - a data shard: when a worker takes the batch of that step (its
  ///   credit for the next one);
  /// - a param shard: at the first gradient of that step or later;
  /// - an aggregator: the same, or the first parameters for that step or
  ///   later (one that only relays);
  /// - the evaluator: when given an epoch's parameters at or past it.
  std::int64_t crash_at = -1;
  /// A worker takes at least this long a step: its batches are handed on
  /// one per pace_ms.
  std::int64_t pace_ms = 0;
  std::int64_t steps_per_epoch = 1;
  update_rule rule;

  bool empty() const { return crash_at < 0 && pace_ms <= 0; }
};

/// The plan `spec` (its incarnation) makes for `who`.
fault_plan fault_plan_for(const job_spec& spec, const actor_id& who);

/// `role` behind the filter `plan` asks for; `role` itself when it asks
/// nothing.
caf::behavior with_faults(caf::event_based_actor* self, fault_plan plan,
                          caf::behavior role);

namespace detail {

template <class... Ts>
std::int32_t index_of(std::int32_t index, Ts...) {
  return index;
}
inline std::int32_t index_of() {
  return 0;
}

template <role R, auto Fn, class Sig = decltype(Fn)>
struct faulty;

template <role R, auto Fn, class State, class... Ts>
struct faulty<R, Fn,
              caf::behavior (*)(caf::stateful_actor<State>*, job_spec, Ts...)> {
  static caf::behavior spawn(caf::stateful_actor<State>* self, job_spec spec,
                             Ts... xs) {
    auto plan = fault_plan_for(spec, actor_id{R, index_of(xs...)});
    auto role = Fn(self, std::move(spec), std::move(xs)...);
    return with_faults(self, std::move(plan), std::move(role));
  }
};

} // namespace detail

/// The spawn function to register role R by (`name_of(R)`): `Fn` is the
/// role's own, `(self, job_spec, index, ...)` or `(self, job_spec)` for
/// the evaluator.
template <role R, auto Fn>
constexpr auto spawn_with_faults = &detail::faulty<R, Fn>::spawn;

} // namespace troupe::actors

// Fault injection in front of a role (faults.hpp): the filter reads steps
// off the messages the role is given, and passes every message on to the
// role's own behavior unless the plan's fault falls on it.
#include "actors/faults.hpp"

#include "actors/messages.hpp"

#include <chrono>
#include <deque>
#include <memory>

namespace troupe::actors {

namespace {

using pace_atom = caf::atom_constant<caf::atom("faultpace")>;
using clock_type = std::chrono::steady_clock;

// The role's behavior, called by the filter's handlers.
struct inner_role {
  caf::behavior role;
  // The message being handled, as it came.
  void pass_on(caf::event_based_actor* self) {
    role(self->current_mailbox_element()->content());
  }
  void pass_on(caf::message& m) { role(m); }
};

// A slow worker's batches, handed on one per `every`.
struct pacer {
  std::chrono::milliseconds every{0};
  std::deque<caf::message> held;
  clock_type::time_point next_free{};
  bool armed = false;
};

// A worker's planned crash, while training has not started.
struct held_crash {
  bool started = false;
  bool due = false; // the batch of the planned step came
};

void crash(caf::event_based_actor* self) {
  self->quit(caf::exit_reason::kill);
}

caf::behavior worker_filter(caf::event_based_actor* self,
                            const fault_plan& plan,
                            std::shared_ptr<inner_role> inner,
                            caf::message_handler rest) {
  const auto crash_at = plan.crash_at;
  const auto spe = plan.steps_per_epoch;
  // A worker is sent its first batches (prefetch) before training starts:
  // the batch of the planned step may come then. The worker dies only once
  // it has been told to start (or, restarted, its step): a failure in
  // start-up ends the job, which is not the fault the plan asks for.
  auto held = std::make_shared<held_crash>();
  // Hands a batch to the worker, or dies there.
  auto deliver = [=](caf::message& m) {
    const auto& b = m.get_as<batch_msg>(0);
    if (b.epoch * spe + b.step == crash_at) {
      if (held->started)
        crash(self);
      else
        held->due = true;
      return;
    }
    inner->pass_on(m);
  };
  // Told to start: the worker is, then dies if its step came already.
  auto start = [=] {
    held->started = true;
    inner->pass_on(self);
    if (held->due)
      crash(self);
  };
  auto p = std::make_shared<pacer>();
  p->every = std::chrono::milliseconds(plan.pace_ms);
  auto arm = [=] {
    p->armed = true;
    const auto now = clock_type::now();
    const auto wait =
        p->next_free > now
            ? std::chrono::ceil<std::chrono::milliseconds>(p->next_free - now)
            : std::chrono::milliseconds(0);
    self->delayed_send(self, wait, pace_atom::value);
  };
  return caf::message_handler{
      [=](start_atom) { start(); },
      [=](recover_atom, std::int64_t) { start(); },
      [=](batch_msg& b) {
        auto m = caf::make_message(std::move(b));
        if (p->every.count() <= 0) {
          deliver(m);
          return;
        }
        p->held.push_back(std::move(m));
        if (!p->armed)
          arm();
      },
      [=](pace_atom) {
        p->armed = false;
        if (p->held.empty())
          return;
        auto m = std::move(p->held.front());
        p->held.pop_front();
        p->next_free = clock_type::now() + p->every;
        deliver(m);
        if (!p->held.empty())
          arm();
      },
  }
      .or_else(rest);
}

} // namespace

fault_plan fault_plan_for(const job_spec& spec, const actor_id& who) {
  fault_plan p;
  p.who = who;
  p.crash_at = spec.chaos_kill_step(who.kind, who.index);
  if (who.kind == role::worker && spec.slow_worker == who.index)
    p.pace_ms = spec.slow_ms;
  p.steps_per_epoch = spec.steps_per_epoch;
  p.rule = update_rule(spec);
  return p;
}

caf::behavior with_faults(caf::event_based_actor* self, fault_plan plan,
                          caf::behavior role) {
  // A role that refused its arguments has no behavior: nothing to filter.
  if (plan.empty() || !role)
    return role;
  auto inner = std::make_shared<inner_role>(inner_role{role});
  caf::message_handler rest{role.as_behavior_impl()};
  const auto k = plan.crash_at;
  // Dies when the step read off the message is due, else hands it on.
  auto die_or_pass = [self, inner](bool due) {
    if (due)
      crash(self);
    else
      inner->pass_on(self);
  };
  auto on_grad = [=](const grad_msg& g) { die_or_pass(k >= 0 && g.step >= k); };
  switch (plan.who.kind) {
    case role::worker:
      return worker_filter(self, plan, inner, rest);
    case role::data_shard:
    case role::stage:
      return caf::message_handler{
          [=](credit_atom, std::int32_t, std::int64_t taken, std::int64_t,
              const caf::actor&) { die_or_pass(taken == k); }}
          .or_else(rest);
    case role::param_shard:
      return caf::message_handler{on_grad}.or_else(rest);
    case role::aggregator: {
      const auto rule = plan.rule;
      return caf::message_handler{
          on_grad,
          [=](const params_msg& p) {
            die_or_pass(k >= 0 && rule.step_of(p.version, p.tag) >= k);
          }}
          .or_else(rest);
    }
    case role::evaluator: {
      const auto spe = plan.steps_per_epoch;
      return caf::message_handler{[=](const params_msg& p) {
               die_or_pass(k >= 0 && p.tag >= 1 && p.tag * spe >= k);
             }}
          .or_else(rest);
    }
  }
  return role;
}

} // namespace troupe::actors

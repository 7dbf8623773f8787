// The fault filter (faults.hpp) in front of a stand-in role that reports
// every message it is given: what passes, where the actor dies and with
// what reason, and how a slow worker's batches are paced.
#include "actors/faults.hpp"
#include "actors/messages.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>

#include <fmt/format.h>

namespace ta = troupe::actors;

namespace {

using clock_type = std::chrono::steady_clock;

// Tells `sink` ("batch", global step), ("grad", step), ("params", tag),
// ("credit", taken), ("start", 0) or ("recover", step) for every message of
// those kinds it is given.
caf::behavior reporter(caf::event_based_actor* self, caf::actor sink,
                       std::int64_t steps_per_epoch) {
  return {
      [=](ta::batch_msg& b) {
        self->send(sink, std::string("batch"),
                   b.epoch * steps_per_epoch + b.step);
      },
      [=](ta::grad_msg& g) { self->send(sink, std::string("grad"), g.step); },
      [=](ta::params_msg& p) {
        self->send(sink, std::string("params"), p.tag);
      },
      [=](ta::credit_atom, std::int32_t, std::int64_t taken, std::int64_t,
          const caf::actor&) {
        self->send(sink, std::string("credit"), taken);
      },
      [=](ta::start_atom) {
        self->send(sink, std::string("start"), std::int64_t{0});
      },
      [=](ta::recover_atom, std::int64_t step) {
        self->send(sink, std::string("recover"), step);
      },
  };
}

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;

  fixture() {
    ta::register_roles(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }
  ~fixture() {
    self.reset();
    sys.reset();
  }

  // A reporter behind the filter of `plan`, watched by the test.
  caf::actor spawn(const ta::fault_plan& plan) {
    auto sink = caf::actor_cast<caf::actor>(*self);
    auto a = sys->spawn(
        [plan, sink](caf::event_based_actor* s, int) {
          return ta::with_faults(s, plan,
                                 reporter(s, sink, plan.steps_per_epoch));
        },
        0);
    (*self)->monitor(a);
    return a;
  }

  // What the reporter said next ("batch 9"), "down REASON" when the actor
  // is gone, "" after a second.
  std::string next() {
    std::string got;
    (*self)->receive(
        [&](std::string& what, std::int64_t n) {
          got = fmt::format("{} {}", what, n);
        },
        [&](caf::down_msg& dm) { got = "down " + caf::to_string(dm.reason); },
        caf::after(std::chrono::seconds(1)) >> [] {});
    return got;
  }
};

ta::batch_msg batch(std::int64_t epoch, std::int64_t step) {
  ta::batch_msg b;
  b.epoch = epoch;
  b.step = step;
  return b;
}

ta::grad_msg grad(std::int64_t step) {
  ta::grad_msg g;
  g.step = step;
  return g;
}

ta::params_msg params(std::int64_t tag) {
  ta::params_msg p;
  p.tag = tag;
  return p;
}

ta::fault_plan plan_of(ta::role r, std::int64_t crash_at,
                       std::int64_t pace_ms = 0) {
  ta::fault_plan p;
  p.who = {r, 0};
  p.crash_at = crash_at;
  p.pace_ms = pace_ms;
  p.steps_per_epoch = 10;
  return p;
}

// Killed as a crash would be.
const auto killed =
    "down " + caf::to_string(caf::make_error(caf::exit_reason::kill));

} // namespace

BOOST_AUTO_TEST_SUITE(fault_injection)

BOOST_AUTO_TEST_CASE(a_plan_comes_from_the_spec_and_its_incarnation) {
  ta::job_spec s;
  s.steps_per_epoch = 7;
  ta::chaos_event e;
  e.action = "kill";
  e.role = "worker";
  e.index = 1;
  e.at_step = 12;
  e.incarnation = 1;
  s.chaos.push_back(e);
  s.slow_worker = 1;
  s.slow_ms = 25;
  auto p = ta::fault_plan_for(s, {ta::role::worker, 1});
  BOOST_TEST(p.crash_at == -1); // incarnation 0: the entry is for the next
  BOOST_TEST(p.pace_ms == 25);
  BOOST_TEST(p.steps_per_epoch == 7);
  s.incarnation = 1;
  p = ta::fault_plan_for(s, {ta::role::worker, 1});
  BOOST_TEST(p.crash_at == 12);
  p = ta::fault_plan_for(s, {ta::role::worker, 0});
  BOOST_TEST(p.empty());
  p = ta::fault_plan_for(s, {ta::role::param_shard, 1});
  BOOST_TEST(p.empty()); // slow_ms is a worker's
}

BOOST_FIXTURE_TEST_CASE(no_fault_leaves_the_role_alone, fixture) {
  caf::behavior role{[](int) {}};
  auto plan = plan_of(ta::role::worker, -1);
  BOOST_REQUIRE(plan.empty());
  caf::event_based_actor* none = nullptr;
  auto b = ta::with_faults(none, plan, role);
  BOOST_TEST(b.as_behavior_impl().get() == role.as_behavior_impl().get());
}

BOOST_FIXTURE_TEST_CASE(a_worker_dies_when_given_the_batch_of_its_step,
                        fixture) {
  auto a = spawn(plan_of(ta::role::worker, 12));
  (*self)->send(a, ta::start_atom::value);
  (*self)->send(a, batch(0, 9));
  (*self)->send(a, batch(1, 1));
  (*self)->send(a, grad(12)); // not what a worker's step is read from
  (*self)->send(a, batch(1, 2));
  (*self)->send(a, batch(1, 3));
  BOOST_TEST(next() == "start 0");
  BOOST_TEST(next() == "batch 9");
  BOOST_TEST(next() == "batch 11");
  BOOST_TEST(next() == "grad 12");
  BOOST_TEST(next() == killed);
}

BOOST_FIXTURE_TEST_CASE(a_worker_given_its_step_before_training_dies_at_start,
                        fixture) {
  // Batches come ahead of the start (prefetch): a death then would be a
  // failure of the job's start-up, not the fault asked for.
  for (const bool restarted : {false, true}) {
    auto a = spawn(plan_of(ta::role::worker, 3));
    for (std::int64_t s = 2; s < 5; ++s)
      (*self)->send(a, batch(0, s));
    BOOST_TEST(next() == "batch 2");
    BOOST_TEST(next() == "batch 4");
    BOOST_TEST(next() == ""); // alive, a second on
    if (restarted) {
      (*self)->send(a, ta::recover_atom::value, std::int64_t{2});
      BOOST_TEST(next() == "recover 2");
    } else {
      (*self)->send(a, ta::start_atom::value);
      BOOST_TEST(next() == "start 0");
    }
    BOOST_TEST(next() == killed);
  }
}

BOOST_FIXTURE_TEST_CASE(a_slow_worker_gets_one_batch_per_pace, fixture) {
  auto a = spawn(plan_of(ta::role::worker, -1, 40));
  const auto t0 = clock_type::now();
  for (std::int64_t s = 0; s < 4; ++s)
    (*self)->send(a, batch(0, s));
  std::vector<clock_type::time_point> at;
  for (std::int64_t s = 0; s < 4; ++s) {
    BOOST_TEST(next() == fmt::format("batch {}", s));
    at.push_back(clock_type::now());
  }
  // Other messages are not held back.
  (*self)->send(a, grad(3));
  BOOST_TEST(next() == "grad 3");
  auto ms = [](clock_type::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  // Three paces at least between the first batch handed on and the last
  // (each is handed on no earlier than a pace after the one before).
  BOOST_TEST(ms(at[3] - t0) >= 120, ms(at[3] - t0) << " ms");
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

BOOST_FIXTURE_TEST_CASE(a_paced_worker_still_dies_at_its_step, fixture) {
  auto a = spawn(plan_of(ta::role::worker, 2, 10));
  (*self)->send(a, ta::start_atom::value);
  BOOST_TEST(next() == "start 0");
  for (std::int64_t s = 0; s < 4; ++s)
    (*self)->send(a, batch(0, s));
  BOOST_TEST(next() == "batch 0");
  BOOST_TEST(next() == "batch 1");
  BOOST_TEST(next() == killed);
}

BOOST_FIXTURE_TEST_CASE(a_data_shard_dies_when_a_worker_takes_its_step,
                        fixture) {
  auto a = spawn(plan_of(ta::role::data_shard, 5));
  auto me = caf::actor_cast<caf::actor>(*self);
  (*self)->send(a, ta::credit_atom::value, std::int32_t{0}, std::int64_t{4},
                std::int64_t{1}, me);
  (*self)->send(a, ta::credit_atom::value, std::int32_t{1}, std::int64_t{6},
                std::int64_t{1}, me); // another worker, past it: no death
  (*self)->send(a, ta::credit_atom::value, std::int32_t{0}, std::int64_t{5},
                std::int64_t{1}, me);
  BOOST_TEST(next() == "credit 4");
  BOOST_TEST(next() == "credit 6");
  BOOST_TEST(next() == killed);
}

BOOST_FIXTURE_TEST_CASE(a_param_shard_dies_at_a_gradient_of_its_step_or_later,
                        fixture) {
  auto a = spawn(plan_of(ta::role::param_shard, 7));
  (*self)->send(a, grad(6));
  (*self)->send(a, params(3)); // a shard is not given parameters
  (*self)->send(a, grad(9));
  BOOST_TEST(next() == "grad 6");
  BOOST_TEST(next() == "params 3");
  BOOST_TEST(next() == killed);
}

BOOST_FIXTURE_TEST_CASE(an_aggregator_dies_at_a_gradient_or_parameters_of_it,
                        fixture) {
  // Sync, one worker: version v is the parameters for step v.
  auto a = spawn(plan_of(ta::role::aggregator, 20));
  (*self)->send(a, grad(19));
  auto p = params(0);
  p.version = 20;
  (*self)->send(a, p);
  BOOST_TEST(next() == "grad 19");
  BOOST_TEST(next() == killed);
}

BOOST_FIXTURE_TEST_CASE(the_evaluator_dies_at_an_epoch_at_or_past_its_step,
                        fixture) {
  // 10 steps an epoch: epoch 2's parameters are those of step 20.
  auto a = spawn(plan_of(ta::role::evaluator, 15));
  (*self)->send(a, params(1));
  (*self)->send(a, params(-1)); // the final parameters carry no epoch
  (*self)->send(a, params(2));
  BOOST_TEST(next() == "params 1");
  BOOST_TEST(next() == "params -1");
  BOOST_TEST(next() == killed);
}

BOOST_AUTO_TEST_SUITE_END()

// The training mode's decisions, without actors: versions per epoch, the
// learning rate's step of a version, gradient scales, which step
// parameters are for, ssp's bound, and where replays begin.
#include "actors/update_rule.hpp"
#include "actors/job_spec.hpp"

#include <boost/test/unit_test.hpp>

namespace ta = troupe::actors;

namespace {

ta::update_rule rule(const char* mode, std::int64_t staleness = 0) {
  ta::job_spec s;
  s.mode = mode;
  s.staleness = staleness;
  s.workers = 4;
  s.batch = 64;
  s.steps_per_epoch = 10;
  return ta::update_rule(s);
}

} // namespace

BOOST_AUTO_TEST_SUITE(update_rule)

BOOST_AUTO_TEST_CASE(sync_sums_the_workers_one_version_a_step) {
  const auto r = rule("sync");
  BOOST_TEST(r.sums_workers());
  BOOST_TEST(!r.holds_workers());
  BOOST_TEST(r.versions_per_epoch() == 10);
  BOOST_TEST(r.step_of_version(7) == 7);
  BOOST_TEST(r.grad_scale() == 1.0f / 64); // the mean over the global batch
  BOOST_TEST(r.stat_share() == 0.25f);     // the shards add 4 shares
  BOOST_TEST(r.step_of(5, -3) == 5);       // the version
  BOOST_TEST(r.may_go_on(100, 0));         // the step barrier is the sum's
  BOOST_TEST(r.replay_from(40, {1, 2, 3, 4}, 2, 4) == 40);
}

BOOST_AUTO_TEST_CASE(async_applies_each_gradient_alone) {
  const auto r = rule("async");
  BOOST_TEST(!r.sums_workers());
  BOOST_TEST(!r.holds_workers());
  BOOST_TEST(r.versions_per_epoch() == 40); // one per worker's gradient
  BOOST_TEST(r.step_of_version(1) == 1);
  BOOST_TEST(r.step_of_version(4) == 1);
  BOOST_TEST(r.step_of_version(5) == 2);
  BOOST_TEST(r.grad_scale() == 1.0f / 16); // the mean over the local batch
  BOOST_TEST(r.stat_share() == 1.0f);
  BOOST_TEST(r.step_of(5, 3) == 3); // the answer's tag
  BOOST_TEST(r.may_go_on(100, 0));
  // The first gradient the snapshot's ledger lacks, by worker.
  BOOST_TEST(r.replay_from(40, {9, 10, 11, 12}, 2, 4) == 12);
  BOOST_TEST(r.replay_from(40, {}, 2, 4) == 0); // no ledger: from the start
}

BOOST_AUTO_TEST_CASE(ssp_holds_workers_to_the_staleness_bound) {
  const auto r = rule("ssp", 2);
  BOOST_TEST(!r.sums_workers());
  BOOST_TEST(r.holds_workers());
  BOOST_TEST(r.versions_per_epoch() == 40);
  BOOST_TEST(r.may_go_on(7, 5));
  BOOST_TEST(!r.may_go_on(8, 5));
  BOOST_TEST(r.may_go_on(5, 5));
}

BOOST_AUTO_TEST_CASE(the_spec_asks_the_rule) {
  ta::job_spec s;
  s.mode = "async";
  s.workers = 3;
  s.steps_per_epoch = 5;
  s.batch = 30;
  BOOST_TEST(s.versions_per_epoch() == 15);
  BOOST_TEST(s.step_of_version(6) == 2);
  BOOST_TEST(s.step_context(7, 1).stat_share == 1.0f);
  s.mode = "sync";
  BOOST_TEST(s.versions_per_epoch() == 5);
  BOOST_TEST(s.step_context(7, 1).stat_share == 1.0f / 3);
}

BOOST_AUTO_TEST_SUITE_END()

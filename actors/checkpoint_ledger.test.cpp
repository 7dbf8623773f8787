// The coordinator's ledger of snapshots on disk, without actors: when a
// version becomes the checkpoint, what the workers may drop, and what a
// rollback and a resume reset.
#include "actors/checkpoint_ledger.hpp"

#include <boost/test/unit_test.hpp>

namespace ta = troupe::actors;

using by_worker = std::vector<std::pair<std::size_t, std::int64_t>>;

BOOST_AUTO_TEST_SUITE(checkpoint_ledger)

BOOST_AUTO_TEST_CASE(a_version_is_the_checkpoint_once_every_shard_has_it) {
  ta::checkpoint_ledger l(2, 3, true);
  BOOST_TEST(l.checkpoint() == -1);
  l.durable(0, 10);
  BOOST_TEST(l.checkpoint() == -1);
  l.durable(0, 20); // shard 0 ahead
  l.durable(1, 10);
  BOOST_TEST(l.checkpoint() == 10);
  l.durable(1, 20);
  BOOST_TEST(l.checkpoint() == 20);
  // Out of order: an older version completing later does not go back.
  ta::checkpoint_ledger m(2, 1, true);
  m.durable(0, 30);
  m.durable(1, 30);
  m.durable(0, 20);
  m.durable(1, 20);
  BOOST_TEST(m.checkpoint() == 30);
  // Shards that are not the job's are ignored.
  BOOST_TEST(!m.durable(2, 40).all);
  BOOST_TEST(!m.durable(-1, 40).all);
  BOOST_TEST(m.checkpoint() == 30);
}

BOOST_AUTO_TEST_CASE(sync_workers_keep_gradients_from_the_older_kept_snapshot) {
  ta::checkpoint_ledger l(2, 2, true);
  // One snapshot each: nothing may go (a corrupt one falls back to step 0).
  BOOST_TEST(!l.durable(0, 10).all);
  BOOST_TEST(!l.durable(1, 10).all);
  BOOST_TEST(!l.durable(0, 20).all); // shard 1 still has one
  const auto p = l.durable(1, 20);
  BOOST_REQUIRE(p.all);
  BOOST_TEST(*p.all == 10);
  BOOST_TEST(p.by_worker.empty());
  BOOST_TEST(!l.durable(0, 30).all); // shard 1's older one is still 10
  const auto q = l.durable(1, 30);
  BOOST_REQUIRE(q.all);
  BOOST_TEST(*q.all == 20);
  BOOST_TEST(l.oldest_kept() == 20);
}

BOOST_AUTO_TEST_CASE(async_workers_keep_what_the_older_snapshot_lacks) {
  ta::checkpoint_ledger l(2, 2, false);
  // Ledgers: what each snapshot applied of worker 0's and 1's gradients.
  l.add_ledger(0, 4, {1, 2});
  l.add_ledger(1, 4, {2, 1});
  l.add_ledger(0, 8, {3, 4});
  l.add_ledger(1, 8, {4, 3});
  BOOST_TEST(l.durable(0, 4).by_worker.empty());
  BOOST_TEST(l.durable(1, 4).by_worker.empty());
  BOOST_TEST(l.checkpoint() == 4);
  BOOST_TEST(l.durable(0, 8).by_worker.empty()); // shard 1 has one
  const auto p = l.durable(1, 8);
  BOOST_TEST(!p.all);
  // The older kept snapshots (version 4) applied worker 0 up to 1 and 2,
  // worker 1 up to 2 and 1: each keeps from one past the lower.
  BOOST_TEST((p.by_worker == by_worker{{0, 2}, {1, 2}}));
  // Newer snapshots move the older kept ones, and the workers, on.
  l.durable(0, 12);
  l.add_ledger(1, 12, {9, 9});
  const auto q = l.durable(1, 12);
  BOOST_TEST((q.by_worker == by_worker{{0, 4}, {1, 4}}));
}

BOOST_AUTO_TEST_CASE(the_final_checkpoint_is_written_when_every_shard_has_it) {
  ta::checkpoint_ledger l(2, 1, true);
  BOOST_TEST(!l.written({-1, -1}));
  l.durable(0, 50);
  BOOST_TEST(!l.written({50, 50}));
  l.durable(1, 40);
  BOOST_TEST(!l.written({50, 50}));
  l.durable(1, 50);
  BOOST_TEST(l.written({50, 50}));
  BOOST_TEST(!l.written({50})); // a shard not asked yet
}

BOOST_AUTO_TEST_CASE(rollback_and_resume_start_the_ledger_anew) {
  ta::checkpoint_ledger l(1, 1, true);
  l.durable(0, 10);
  l.durable(0, 20);
  BOOST_TEST(l.oldest_kept() == 10);
  l.restart_from(10);
  BOOST_TEST(l.oldest_kept() == 0); // nothing kept since the rollback
  BOOST_TEST(l.checkpoint() == 20); // what is on disk stays
  // Pruning goes on from the rollback's version, never back.
  BOOST_TEST(!l.durable(0, 11).all);
  const auto p = l.durable(0, 12);
  BOOST_REQUIRE(p.all);
  BOOST_TEST(*p.all == 11);
  ta::checkpoint_ledger r(3, 1, true);
  r.resumed(70);
  BOOST_TEST(r.checkpoint() == 70);
}

BOOST_AUTO_TEST_SUITE_END()

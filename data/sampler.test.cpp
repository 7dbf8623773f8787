#include "data/sampler.hpp"

#include <boost/test/unit_test.hpp>

#include <set>
#include <stdexcept>

using troupe::data::batch_plan;

BOOST_AUTO_TEST_SUITE(sampler)

BOOST_AUTO_TEST_CASE(plan_shapes) {
  batch_plan p(60000, 2, 2, 64, 42);
  BOOST_TEST(p.local_batch() == 32);
  BOOST_TEST(p.steps_per_epoch() == 937); // 30000 / 32
  BOOST_TEST(p.begin(1) == 30000);
  BOOST_TEST(p.shard_of(3) == 1);
  batch_plan q(60000, 1, 1, 64, 42);
  BOOST_TEST(q.steps_per_epoch() == 937);
}

BOOST_AUTO_TEST_CASE(batches_are_a_pure_function_of_the_seed) {
  batch_plan a(1000, 2, 4, 40, 7);
  batch_plan b(1000, 2, 4, 40, 7);
  BOOST_TEST(a.rows(1, 3, 2) == b.rows(1, 3, 2));
  batch_plan c(1000, 2, 4, 40, 8);
  BOOST_TEST(a.rows(1, 3, 2) != c.rows(1, 3, 2));
  BOOST_TEST(a.rows(0, 3, 2) != a.rows(1, 3, 2)); // reshuffled per epoch
}

BOOST_AUTO_TEST_CASE(an_epoch_visits_each_row_at_most_once_within_its_shard) {
  batch_plan p(1000, 2, 4, 40, 3);
  std::set<std::int64_t> seen;
  for (std::int64_t t = 0; t < p.steps_per_epoch(); ++t)
    for (std::int64_t r = 0; r < 4; ++r)
      for (auto row : p.rows(0, t, r)) {
        BOOST_REQUIRE(seen.insert(row).second);
        const auto s = p.shard_of(r);
        BOOST_REQUIRE(row >= p.begin(s));
        BOOST_REQUIRE(row < p.end(s));
      }
  BOOST_TEST(seen.size() == std::size_t(p.steps_per_epoch() * 40));
}

BOOST_AUTO_TEST_CASE(bad_plans_name_the_key) {
  BOOST_CHECK_EXCEPTION(batch_plan(100, 3, 2, 10, 0), std::invalid_argument,
                        [](const std::invalid_argument& e) {
                          return std::string(e.what()).find(
                                     "data.shards = 3") == 0;
                        });
  BOOST_CHECK_THROW(batch_plan(100, 1, 3, 10, 0), std::invalid_argument);
  BOOST_CHECK_THROW(batch_plan(100, 1, 1, 200, 0), std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()

#include "actors/history.hpp"

#include <boost/test/unit_test.hpp>

namespace ta = troupe::actors;

BOOST_AUTO_TEST_SUITE(history)

BOOST_AUTO_TEST_CASE(progress_is_thinned_evenly_and_bounded) {
  ta::history_recorder r(8);
  for (std::int64_t s = 1; s <= 100; ++s)
    r.progress({s, static_cast<double>(s), 1.0 / static_cast<double>(s), 0.1});
  const auto h = r.snapshot(123);
  BOOST_TEST(h.t == 123.0);
  BOOST_TEST(h.progress.size() < 8u);
  BOOST_TEST(h.progress.size() >= 4u);
  // Evenly spaced from the first report on.
  BOOST_TEST(h.progress.front().step == 1);
  const auto gap = h.progress[1].step - h.progress[0].step;
  for (std::size_t i = 1; i < h.progress.size(); ++i)
    BOOST_TEST(h.progress[i].step - h.progress[i - 1].step == gap);
  // The newest kept is within one stride of the last report.
  BOOST_TEST(100 - h.progress.back().step < gap);
}

BOOST_AUTO_TEST_CASE(epochs_and_events_are_all_kept) {
  ta::history_recorder r;
  r.epoch({1, 10, 1.5, 0.9, 0.8, 0.7, 100});
  ta::job_event e;
  e.kind = "fault";
  e.actor = "worker:0";
  r.event(e);
  const auto h = r.snapshot(2);
  BOOST_REQUIRE(h.epochs.size() == 1u);
  BOOST_TEST(h.epochs[0].test_accuracy == 0.7);
  BOOST_REQUIRE(h.events.size() == 1u);
  BOOST_TEST(h.events[0].actor == "worker:0");
}

BOOST_AUTO_TEST_SUITE_END()

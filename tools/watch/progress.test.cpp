#include "tools/watch/progress.hpp"

#include <boost/test/unit_test.hpp>

namespace tw = troupe::watch;

BOOST_AUTO_TEST_SUITE(progress)

BOOST_AUTO_TEST_CASE(rate_and_eta_come_from_the_recent_window) {
  tw::progress_meter m(/*epochs=*/4, /*batch=*/64, /*window_s=*/10);
  // Start-up took 30 s; then 10 steps a second.
  auto f = m.update(1, 400, 2.5, 30.0);
  BOOST_TEST(f.epoch == 1);
  BOOST_TEST(f.samples_per_s == 0); // one report: no rate yet
  BOOST_TEST(!f.eta_s.has_value());
  f = m.update(101, 400, 1.0, 40.0);
  BOOST_TEST(f.epoch == 2); // 100 steps per epoch: the second is under way
  BOOST_TEST(f.samples_per_s == 640.0);
  BOOST_TEST(*f.eta_s == 29.9, boost::test_tools::tolerance(1e-9));
  f = m.update(201, 400, 0.9, 50.0);
  f = m.update(301, 400, 0.8, 60.0);
  // The window keeps the last 10 s (and the report just before).
  BOOST_TEST(f.samples_per_s == 640.0);
  BOOST_TEST(f.epoch == 4);
  f = m.update(400, 400, 0.7, 70.0);
  BOOST_TEST(f.epoch == 4); // the last step stays in the last epoch
  BOOST_TEST(*f.eta_s == 0.0);
  // A rollback: steps go back, the window starts again.
  f = m.update(200, 400, 0.9, 75.0);
  BOOST_TEST(f.samples_per_s == 0);
}

BOOST_AUTO_TEST_CASE(clock_text_reads_like_a_clock) {
  BOOST_TEST(tw::clock_text(0) == "0:00");
  BOOST_TEST(tw::clock_text(61.4) == "1:01");
  BOOST_TEST(tw::clock_text(3725) == "1:02:05");
  BOOST_TEST(tw::clock_text(-3) == "0:00");
}

tw::progress_figures sample() {
  tw::progress_figures f;
  f.epoch = 3;
  f.epochs = 10;
  f.step = 1234;
  f.steps = 2811;
  f.loss = 0.51684;
  f.samples_per_s = 12345.6;
  f.elapsed_s = 72;
  f.eta_s = 95;
  return f;
}

BOOST_AUTO_TEST_CASE(the_bar_line_fits_the_width_and_keeps_the_essentials) {
  const auto f = sample();
  const auto wide = tw::bar_line(f, 120);
  BOOST_TEST(wide.size() <= 119u);
  BOOST_TEST(wide == "[###############.....................] epoch 3/10  "
                     "step 1234/2811  loss 0.5168  ETA 1:35  12346 samples/s  "
                     "1:12 elapsed");
  const auto narrow = tw::bar_line(f, 50);
  BOOST_TEST(narrow.size() <= 49u, narrow);
  BOOST_TEST(narrow == "epoch 3/10  step 1234/2811  loss 0.5168  ETA 1:35");
  const auto tiny = tw::bar_line(f, 36);
  BOOST_TEST(tiny == "e3/10 1234/2811 loss 0.5168");
  for (int w = 1; w < 200; ++w)
    BOOST_TEST(tw::bar_line(f, w).size() <=
                   static_cast<std::size_t>(w > 1 ? w - 1 : 1),
               "width " << w);
}

BOOST_AUTO_TEST_CASE(the_plain_line_has_every_figure) {
  auto f = sample();
  BOOST_TEST(tw::plain_line(f) == "epoch 3/10  step 1234/2811  loss 0.5168  "
                                  "12346 samples/s  elapsed 1:12  ETA 1:35");
  f.samples_per_s = 0;
  f.eta_s.reset();
  BOOST_TEST(tw::plain_line(f) == "epoch 3/10  step 1234/2811  loss 0.5168  "
                                  "- samples/s  elapsed 1:12  ETA -");
}

BOOST_AUTO_TEST_SUITE_END()

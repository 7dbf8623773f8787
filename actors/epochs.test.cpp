// What the coordinator makes of progress reports, without actors: losses
// counted once per step however often a step is redone, epochs reported in
// order once trained and evaluated, early stopping's verdicts, and the
// clip-norm scale across shards.
#include "actors/epochs.hpp"
#include "actors/clip_norm.hpp"
#include "actors/reports.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>

namespace ta = troupe::actors;
using clock_type = ta::epoch_accounting::clock_type;

namespace {

ta::job_spec two_workers() {
  ta::job_spec s;
  s.workers = 2;
  s.epochs = 2;
  s.steps_per_epoch = 3;
  s.batch = 10;
  s.optimizer.lr = 0.5;
  return s;
}

// Worker w's report of steps [first, first + losses.size()), each over a
// batch of 10.
ta::progress_msg report(std::int32_t w, std::int64_t first,
                        std::vector<double> losses) {
  ta::progress_msg p;
  p.worker = w;
  p.first_step = first;
  p.steps_done = first + static_cast<std::int64_t>(losses.size());
  p.samples.assign(losses.size(), 10);
  p.losses = std::move(losses);
  return p;
}

} // namespace

BOOST_AUTO_TEST_SUITE(epochs)

BOOST_AUTO_TEST_CASE(an_epoch_is_reported_once_every_worker_trained_it) {
  ta::epoch_accounting acc(two_workers());
  const auto t0 = clock_type::now();
  acc.start(t0);
  BOOST_TEST(!acc.report(report(0, 0, {10, 20, 30}), true, t0));
  BOOST_TEST(acc.slowest() == 0); // worker 1 has done nothing
  BOOST_TEST(!acc.next(false));
  const auto t1 = t0 + std::chrono::seconds(2);
  BOOST_TEST(acc.report(report(1, 0, {40, 50, 60}), true, t1));
  BOOST_TEST(acc.slowest() == 3);
  BOOST_TEST(acc.recent_loss() == 5.0); // (40+50+60) / 30 samples
  // With an evaluator, the epoch waits for its evaluation.
  BOOST_TEST(!acc.next(true));
  ta::eval_msg e;
  e.epoch = 1;
  e.loss = 0.25;
  e.accuracy = 0.75;
  acc.evaluated(e);
  BOOST_TEST(acc.has_evaluation(1));
  BOOST_TEST(!acc.has_evaluation(2));
  const auto s = acc.next(true);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->epoch == 1);
  BOOST_TEST(s->steps == 3);
  BOOST_TEST(s->train_loss == 210.0 / 60.0);
  BOOST_TEST(s->samples_per_s == 15.0); // 3 steps x 10 samples in 2 s
  BOOST_TEST(s->wall_s == 2.0);
  BOOST_TEST(s->lr == 0.5);
  BOOST_TEST(s->evaluated);
  BOOST_TEST(s->test_loss == 0.25);
  BOOST_REQUIRE(s->test_accuracy);
  BOOST_TEST(*s->test_accuracy == 0.75);
  BOOST_TEST(acc.reported() == 1);
  BOOST_TEST(!acc.next(true)); // reported once
}

BOOST_AUTO_TEST_CASE(
    steps_done_again_count_once_and_old_incarnations_keep_no_position) {
  ta::epoch_accounting acc(two_workers());
  const auto t0 = clock_type::now();
  acc.start(t0);
  acc.report(report(0, 0, {1, 1, 1, 1}), true, t0);
  acc.report(report(1, 0, {2, 2}), true, t0);
  BOOST_TEST(acc.slowest() == 2);
  // Worker 1's stopped incarnation's last words: step 2's loss counts (and
  // completes epoch 1), its position does not.
  BOOST_TEST(acc.report(report(1, 2, {100}), false, t0));
  BOOST_TEST(acc.slowest() == 2);
  // Its new incarnation redoes steps 1 and 2 with other losses: the first
  // counts stand, nothing new completes.
  BOOST_TEST(!acc.report(report(1, 1, {7, 8}), true, t0));
  BOOST_TEST(acc.slowest() == 3);
  BOOST_TEST(acc.recent_loss() == 100.0 / 10.0); // the last report with news
  const auto s = acc.next(false);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->train_loss == (3.0 + 4.0 + 100.0) / 60.0);
  // A rollback puts the workers back; the slowest follows.
  acc.workers_at({1, 1});
  BOOST_TEST(acc.slowest() == 1);
}

BOOST_AUTO_TEST_CASE(reports_of_no_worker_or_out_of_range_steps_are_ignored) {
  ta::epoch_accounting acc(two_workers());
  acc.start(clock_type::now());
  BOOST_TEST(!acc.report(report(2, 0, {1}), true, clock_type::now()));
  BOOST_TEST(!acc.report(report(-1, 0, {1}), true, clock_type::now()));
  auto mismatched = report(0, 0, {1, 2});
  mismatched.samples.pop_back();
  BOOST_TEST(!acc.report(mismatched, true, clock_type::now()));
  BOOST_TEST(acc.slowest() == 0);
  // Steps past the job's or before 0 count nothing (the position does).
  BOOST_TEST(!acc.report(report(0, 6, {1, 1, 1}), true, clock_type::now()));
  BOOST_TEST(!acc.report(report(1, -3, {1, 1, 1}), true, clock_type::now()));
  BOOST_TEST(acc.recent_loss() == 0.0);
}

BOOST_AUTO_TEST_CASE(a_resumed_job_reports_from_the_checkpoints_epoch) {
  ta::epoch_accounting acc(two_workers());
  const auto t0 = clock_type::now();
  acc.start(t0);
  acc.resumed(1, 3);
  acc.report(report(0, 3, {1, 1, 1}), true, t0 + std::chrono::seconds(1));
  BOOST_TEST(
      acc.report(report(1, 3, {1, 1, 1}), true, t0 + std::chrono::seconds(1)));
  const auto s = acc.next(false);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->epoch == 2);
  BOOST_TEST(s->wall_s == 1.0);
  BOOST_TEST(s->samples_per_s == 30.0); // 3 steps x 10 samples in 1 s
  BOOST_TEST(!acc.next(false));
  BOOST_TEST(acc.reported() == 2);
}

BOOST_AUTO_TEST_CASE(a_resume_mid_epoch_counts_only_the_steps_trained_here) {
  // The checkpoint is at step 4 of epochs of 3 steps: epoch 2 is trained
  // here from step 4 only (2 of its 3 steps), in 1 s.
  ta::epoch_accounting acc(two_workers());
  const auto t0 = clock_type::now();
  acc.start(t0);
  acc.resumed(1, 4);
  acc.report(report(0, 4, {1, 1}), true, t0 + std::chrono::seconds(1));
  BOOST_TEST(
      acc.report(report(1, 4, {1, 1}), true, t0 + std::chrono::seconds(1)));
  const auto s = acc.next(false);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->epoch == 2);
  BOOST_TEST(s->samples_per_s == 20.0); // not 30: step 3 was not trained here
}

BOOST_AUTO_TEST_CASE(totals_for_the_result) {
  ta::epoch_accounting acc(two_workers());
  auto a = report(0, 0, {1});
  a.pushed = 4;
  a.max_lead = 2;
  a.compute_s = 0.5;
  a.wait_s = 0.25;
  a.grad_buffers = 3;
  auto b = report(1, 0, {1});
  b.pushed = 5;
  b.max_lead = 1;
  b.compute_s = 0.5;
  b.grad_buffers = 7;
  acc.report(a, true, clock_type::now());
  acc.report(b, true, clock_type::now());
  b.pushed = 9; // a stopped incarnation's total does not replace the count
  acc.report(b, false, clock_type::now());
  BOOST_TEST(acc.pushed() == 9);
  BOOST_TEST(acc.max_lead() == 2);
  BOOST_TEST(acc.compute_s() == 1.5);
  BOOST_TEST(acc.wait_s() == 0.25);
  BOOST_TEST(acc.gradient_buffers() == 7);
}

BOOST_AUTO_TEST_CASE(
    early_stopping_keeps_the_best_epoch_and_stops_after_patience) {
  auto spec = two_workers();
  spec.epochs = 10;
  spec.patience = 2;
  spec.monitor = "test_loss";
  ta::early_stopping es(spec);
  auto epoch = [&](std::int64_t n, double loss) {
    es.keep(n, troupe::devices::tensor::from(
                   {1}, std::vector<float>{static_cast<float>(n)}));
    ta::epoch_summary s;
    s.epoch = n;
    s.evaluated = true;
    s.test_loss = loss;
    return es.judge(s);
  };
  using v = ta::early_stopping::verdict;
  BOOST_TEST((epoch(1, 0.9) == v::go_on));
  BOOST_TEST((epoch(2, 0.5) == v::go_on));
  BOOST_TEST((epoch(3, 0.6) == v::go_on)); // one without a better loss
  BOOST_TEST((epoch(4, 0.5) == v::stop));  // equal is not better: two
  BOOST_TEST(es.best_epoch() == 2);
  BOOST_TEST(es.best_value() == 0.5);
  BOOST_TEST(es.best_params().data()[0] == 2.0f);
}

BOOST_AUTO_TEST_CASE(early_stopping_on_a_maximized_figure_and_the_last_epoch) {
  auto spec = two_workers();
  spec.epochs = 3;
  spec.patience = 5;
  spec.monitor = "test_accuracy";
  ta::early_stopping es(spec);
  auto epoch = [&](std::int64_t n, double acc) {
    es.keep(n, troupe::devices::tensor::from(
                   {1}, std::vector<float>{static_cast<float>(n)}));
    ta::epoch_summary s;
    s.epoch = n;
    s.evaluated = true;
    s.test_accuracy = acc;
    return es.judge(s);
  };
  using v = ta::early_stopping::verdict;
  BOOST_TEST((epoch(1, 0.5) == v::go_on));
  BOOST_TEST((epoch(2, 0.8) == v::go_on));
  // The last epoch is worse: the job ends as planned with epoch 2's.
  BOOST_TEST((epoch(3, 0.7) == v::keep_best));
  BOOST_TEST(es.best_epoch() == 2);
  BOOST_TEST(es.best_params().data()[0] == 2.0f);
}

BOOST_AUTO_TEST_CASE(clip_scale_is_decided_once_every_shard_is_in) {
  ta::clip_norm_scales clip(2, 1.0, 4);
  BOOST_TEST(!clip.add(7, 0, {9.0}, 0)); // shard 1 missing
  BOOST_TEST(!clip.add(7, 2, {1.0}, 0)); // no such shard
  const auto a = clip.add(7, 1, {16.0}, 0);
  BOOST_REQUIRE(a);
  BOOST_TEST(a->to_all);
  BOOST_TEST(a->scale == static_cast<float>(1.0 / (5.0 + 1e-6))); // norm 5
  // A replay of step 7 gets the same scale, for the asking shard only.
  const auto again = clip.add(7, 0, {0.0}, 0);
  BOOST_REQUIRE(again);
  BOOST_TEST(!again->to_all);
  BOOST_TEST(again->scale == a->scale);
  // Below the bound nothing is scaled.
  clip.add(8, 0, {0.25}, 0);
  const auto small = clip.add(8, 1, {0.25}, 0);
  BOOST_REQUIRE(small);
  BOOST_TEST(small->scale == 1.0f);
  // Scales older than the oldest snapshot minus keep_steps are forgotten.
  BOOST_TEST(clip.kept() == 2u);
  clip.add(20, 0, {1.0}, 20);
  clip.add(20, 1, {1.0}, 20);
  BOOST_TEST(clip.kept() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

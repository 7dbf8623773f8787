// job_control (control.hpp): what a controller's decisions ask of the
// coordinator, with a scripted controller.
#include "actors/control.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

namespace st = troupe::stages;
namespace ta = troupe::actors;

namespace {

// Decides what the test put in `script` for each epoch (by 1-based epoch)
// and step; remembers what it was told.
struct script {
  std::map<std::int64_t, st::decision> epochs;
  std::map<std::int64_t, st::decision> steps;
  std::vector<st::epoch_figures> told;
  std::vector<std::int64_t> steps_told;
  bool throw_at_epoch = false;
  std::int64_t throw_once_at = 0; // an epoch; 0: never
};
script* current = nullptr;

class scripted final : public st::controller {
public:
  st::decision on_epoch(const st::epoch_figures& f) override {
    current->told.push_back(f);
    if (current->throw_at_epoch)
      throw std::runtime_error("out of ideas");
    if (current->throw_once_at == f.epoch) {
      current->throw_once_at = 0;
      throw std::runtime_error("a hiccup");
    }
    auto it = current->epochs.find(f.epoch);
    return it == current->epochs.end() ? st::decision{} : it->second;
  }
  st::decision on_step(const st::step_figures& f) override {
    current->steps_told.push_back(f.step);
    auto it = current->steps.find(f.step);
    return it == current->steps.end() ? st::decision{} : it->second;
  }
};

struct fixture {
  script s;
  ta::job_spec spec;
  fixture() {
    static const bool registered = [] {
      st::register_controller("test_scripted", [](const st::params&) {
        return std::make_unique<scripted>();
      });
      return true;
    }();
    (void)registered;
    current = &s;
    spec.controller.type = "test_scripted";
    spec.epochs = 5;
    spec.steps_per_epoch = 10;
    spec.optimizer.lr = 0.5f;
  }
  ~fixture() { current = nullptr; }

  static ta::epoch_summary epoch(std::int64_t e) {
    ta::epoch_summary s;
    s.epoch = e;
    s.steps = e * 10;
    s.train_loss = 1.0 / static_cast<double>(e);
    s.evaluated = true;
    s.test_loss = 2.0 / static_cast<double>(e);
    s.test_accuracy = 0.5;
    s.lr = 0.5;
    return s;
  }
  static troupe::devices::tensor params_of(float v) {
    auto t = troupe::devices::tensor::zeros({3});
    t.data()[0] = v;
    return t;
  }
};

st::decision stop(const std::string& why = "") {
  st::decision d;
  d.stop = true;
  d.reason = why;
  return d;
}
st::decision keep(const std::string& why = "") {
  st::decision d;
  d.checkpoint = true;
  d.reason = why;
  return d;
}
st::decision scale(double by) {
  st::decision d;
  d.lr_scale = by;
  return d;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(job_control, fixture)

BOOST_AUTO_TEST_CASE(epochs_are_judged_in_order_with_the_scales_so_far) {
  s.epochs[1] = scale(0.5);
  ta::job_control c(spec);
  c.keep(1, params_of(1));
  auto out = c.judge(epoch(1));
  BOOST_TEST(out.error.empty());
  BOOST_TEST(out.tell_shards);
  BOOST_TEST(!out.stop);
  BOOST_TEST(!out.checkpoint.has_value());
  BOOST_TEST(c.decided() == std::vector<double>({0.5}));
  BOOST_REQUIRE(out.events.size() == 1u);
  BOOST_TEST(out.events[0].kind == "controller");
  BOOST_TEST(out.events[0].step == 20);
  BOOST_TEST(out.events[0].message ==
             "controller test_scripted: lr x 0.5 after epoch 1 (lr 0.25 from "
             "step 21, epoch 3)");
  // Judged: its parameters are no longer wanted; the next epoch's are.
  BOOST_TEST(!c.wants(1));
  BOOST_TEST(c.wants(2));
  out = c.judge(epoch(2));
  BOOST_TEST(out.events.empty());
  BOOST_REQUIRE(s.told.size() == 2u);
  BOOST_TEST(s.told[1].lr_scale == 0.5);
  BOOST_TEST(s.told[1].test_loss == 1.0);
  BOOST_TEST(c.decided() == std::vector<double>({0.5, 1.0}));
}

BOOST_AUTO_TEST_CASE(a_checkpoint_hands_out_the_epochs_parameters) {
  s.epochs[2] = keep("best so far");
  ta::job_control c(spec);
  c.keep(1, params_of(1));
  c.keep(2, params_of(2));
  BOOST_TEST(!c.judge(epoch(1)).checkpoint.has_value());
  auto out = c.judge(epoch(2));
  BOOST_REQUIRE(out.checkpoint.has_value());
  BOOST_TEST(out.checkpoint->data()[0] == 2.0f);
  BOOST_TEST(out.reason == "best so far");
  BOOST_REQUIRE(out.events.size() == 1u);
  BOOST_TEST(out.events[0].message ==
             "controller test_scripted: keep epoch 2's model: best so far");
  BOOST_TEST(!out.stop);
}

BOOST_AUTO_TEST_CASE(a_stop_keeps_the_epoch_until_its_parameters_are_taken) {
  s.epochs[2] = stop("enough");
  ta::job_control c(spec);
  c.keep(1, params_of(1));
  c.judge(epoch(1));
  // With an evaluator the epoch's parameters come before its figures;
  // without, they may come after: either way they are kept.
  auto out = c.judge(epoch(2));
  BOOST_TEST(out.stop);
  BOOST_TEST(c.stop_after() == 2);
  BOOST_TEST(c.stopped_params() == nullptr);
  BOOST_TEST(c.wants(2));
  c.keep(2, params_of(2));
  BOOST_REQUIRE(c.stopped_params() != nullptr);
  BOOST_TEST(c.stopped_params()->data()[0] == 2.0f);
  BOOST_TEST(c.decided() == std::vector<double>({1.0, 1.0}));
  BOOST_REQUIRE(out.events.size() == 1u);
  BOOST_TEST(out.events[0].message ==
             "controller test_scripted: stop after epoch 2, keeping its "
             "parameters: enough");
}

BOOST_AUTO_TEST_CASE(a_step_asks_for_its_epochs_stop_and_checkpoint) {
  s.steps[14] = stop("loss went up");
  s.steps[16] = keep("never logged: the first asking counts");
  s.steps[3] = keep("at step 3");
  ta::job_control c(spec);
  for (const std::int64_t step : {3, 7, 14, 16})
    BOOST_TEST(c.on_step(step, 0.1, 0.5).error == "");
  // Each step once: a rollback's steps are not told again.
  BOOST_TEST(c.on_step(7, 0.1, 0.5).error == "");
  BOOST_TEST(s.steps_told == std::vector<std::int64_t>({3, 7, 14, 16}));
  // Epoch 1 (steps 0-9): the checkpoint asked at step 3.
  c.keep(1, params_of(1));
  auto out = c.judge(epoch(1));
  BOOST_TEST(out.checkpoint.has_value());
  BOOST_TEST(out.reason == "at step 3");
  BOOST_TEST(!out.stop);
  // Epoch 2 (steps 10-19): the stop asked at step 14.
  c.keep(2, params_of(2));
  out = c.judge(epoch(2));
  BOOST_TEST(out.stop);
  BOOST_TEST(!out.checkpoint.has_value());
  BOOST_REQUIRE(out.events.size() == 1u);
  BOOST_TEST(out.events[0].message ==
             "controller test_scripted: stop after epoch 2, keeping its "
             "parameters (asked at step 14: loss went up)");
  BOOST_TEST(c.stopped_params()->data()[0] == 2.0f);
}

BOOST_AUTO_TEST_CASE(bad_decisions_and_throws_are_named) {
  s.steps[5] = scale(0.5);
  ta::job_control c(spec);
  BOOST_TEST(c.on_step(5, 0.1, 0.5).error ==
             "controller \"test_scripted\" at step 5: lr_scale 0.5 asked "
             "between epochs (the lr changes at epochs only: decide it in "
             "on_epoch)");
  s.epochs[1] = scale(0);
  BOOST_TEST(c.judge(epoch(1)).error ==
             "controller \"test_scripted\" after epoch 1: lr_scale 0 is not "
             "in (0, 1e6]");
  s.epochs[1] = scale(std::numeric_limits<double>::quiet_NaN());
  BOOST_TEST(c.judge(epoch(1)).error.find("lr_scale nan is not in") !=
             std::string::npos);
  s.throw_at_epoch = true;
  spec.max_restarts = 2;
  ta::job_control twice(spec);
  auto out = twice.judge(epoch(1));
  BOOST_TEST(out.restarts == 2);
  BOOST_TEST(out.error ==
             "controller \"test_scripted\" failed after epoch 1: out of ideas "
             "(supervision gave up after 2 restart(s) within 60 s: "
             "supervision.max_restarts = 2)");
  spec.max_restarts = 0;
  ta::job_control never(spec);
  BOOST_TEST(never.judge(epoch(1)).error ==
             "controller \"test_scripted\" failed after epoch 1: out of ideas");
}

BOOST_AUTO_TEST_CASE(a_controller_that_throws_is_restarted_and_told_again) {
  s.epochs[1] = scale(0.5);
  s.throw_once_at = 3;
  ta::job_control c(spec);
  c.judge(epoch(1));
  BOOST_TEST(c.on_step(15, 0.2, 0.5).error.empty());
  c.judge(epoch(2));
  auto out = c.judge(epoch(3));
  BOOST_TEST(out.error.empty());
  BOOST_TEST(out.restarts == 1);
  BOOST_REQUIRE(!out.events.empty());
  BOOST_TEST(out.events[0].kind == "failed");
  BOOST_TEST(out.events[0].actor == "controller");
  BOOST_TEST(out.events[0].message ==
             "controller test_scripted failed after epoch 3 (a hiccup); "
             "restarting it, told again the 3 figure(s) it was told");
  // The fresh one was told epoch 1, step 15 and epoch 2 again, then epoch
  // 3; epoch 1's scale, decided again, is not applied twice.
  std::vector<std::int64_t> epochs;
  for (const auto& f : s.told)
    epochs.push_back(f.epoch);
  BOOST_TEST(epochs == std::vector<std::int64_t>({1, 2, 3, 1, 2, 3}));
  BOOST_TEST(s.steps_told == std::vector<std::int64_t>({15, 15}));
  BOOST_TEST(c.decided() == std::vector<double>({0.5, 1.0, 1.0}));
  BOOST_TEST(s.told.back().lr_scale == 0.5);
}

BOOST_AUTO_TEST_SUITE_END()

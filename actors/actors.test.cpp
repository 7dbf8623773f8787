// The roles in one actor system: flow control, canonical reduction, and
// whole jobs whose digests must not depend on partitioning.
#include "actors/messages.hpp"

#include "data/sampler.hpp"
#include "data/test_files.hpp"
#include "devices/nn/model.hpp"
#include "devices/random.hpp"
#include "runtime/config.hpp"

#include <boost/test/unit_test.hpp>

#include <cstring>
#include <fmt/format.h>

namespace ta = troupe::actors;
namespace dv = troupe::devices;
using troupe::data::testing::temp_dir;
using troupe::data::testing::write_text;

namespace {

// A 3-class problem in 4 features: class = argmax of a fixed projection.
std::string synthetic_csv(int rows, std::uint64_t seed) {
  std::string out = "a,b,c,d,label\n";
  for (int i = 0; i < rows; ++i) {
    float f[4];
    for (int j = 0; j < 4; ++j)
      f[j] = 2 * dv::unit_float(seed, std::uint64_t(i * 4 + j)) - 1;
    const float s0 = f[0] + f[1], s1 = f[2] - f[0], s2 = f[3] - f[1];
    const int label = s0 > s1 ? (s0 > s2 ? 0 : 2) : (s1 > s2 ? 1 : 2);
    out += fmt::format("{},{},{},{},{}\n", f[0], f[1], f[2], f[3], label);
  }
  return out;
}

struct csv_job {
  temp_dir dir;
  csv_job() {
    write_text(dir.file("train.csv"), synthetic_csv(2000, 1));
    write_text(dir.file("test.csv"), synthetic_csv(500, 2));
  }
  ta::job_spec spec(const std::vector<std::string>& sets) const {
    std::string text = fmt::format(R"([job]
seed = 7
epochs = 2
[data]
format = "csv"
classes = 3
train = "{}"
test = "{}"
batch = 32
[model]
layers = [ {{ type = "dense", units = 16 }}, {{ type = "tanh" }}, {{ type = "dense", units = 3 }} ]
[optimizer]
type = "momentum"
lr = 0.1
[cluster]
threads = 2
)",
                                   dir.file("train.csv"), dir.file("test.csv"));
    auto cfg = troupe::runtime::config::parse(text, "job.toml", sets);
    return ta::parse_job_spec(cfg);
  }
};

// One dense layer, inputs -> units, one shard, one epoch of `steps` steps.
ta::job_spec tiny_spec(std::int64_t workers, std::int64_t inputs,
                       std::int64_t units, std::int64_t steps) {
  ta::job_spec s;
  s.workers = workers;
  s.partitions = 1;
  s.inputs = inputs;
  s.layers = {{dv::nn::layer_kind::dense, units}};
  s.epochs = 1;
  s.steps_per_epoch = steps;
  return s;
}

} // namespace

BOOST_AUTO_TEST_SUITE(roles)

BOOST_FIXTURE_TEST_CASE(digest_independent_of_partitions_and_reruns, csv_job) {
  auto base = ta::run_job(spec({"model.partitions=1"}));
  BOOST_TEST(base.steps == 2 * (2000 / 32));
  BOOST_TEST(*base.test_accuracy > 0.8);
  BOOST_TEST(base.params_digest.size() == 64u);
  for (const char* p : {"model.partitions=1", "model.partitions=2",
                        "model.partitions=4", "model.partitions=5"}) {
    auto r = ta::run_job(spec({p}));
    BOOST_TEST(r.params_digest == base.params_digest, p);
    BOOST_TEST(*r.test_accuracy == *base.test_accuracy);
  }
  auto other = ta::run_job(spec({"job.seed=8"}));
  BOOST_TEST(other.params_digest != base.params_digest);
}

// The parameters a job ends with, computed without actors: every step,
// each worker's batch (the sampler's rows) through nn::model, the two
// gradients summed, and the optimizer applied to the whole vector, as one
// process with a plain loop would.
std::vector<float> plain_loop(ta::job_spec spec) {
  const auto train = troupe::data::load_shared(ta::train_source(spec));
  ta::data_facts facts{train->samples, train->features,    train->classes,
                       train->targets, train->description, train->sample_shape,
                       train->labels};
  ta::resolve_job_spec(spec, facts, nullptr);
  BOOST_REQUIRE(spec.synchronous());
  BOOST_REQUIRE(spec.workers == 2); // a + b: the sum has one order
  auto& dev = dv::cpu();
  dv::nn::model net(dev, spec.model_input(), spec.layers, spec.loss);
  const auto count = net.param_count();
  auto params = dv::tensor::empty({count});
  dv::nn::init_params(net.layout(), spec.seed, 0, count, params.data());
  std::vector<dv::tensor> state;
  for (int i = 0; i < dv::optimizer_state_count(spec.optimizer.kind); ++i)
    state.push_back(dv::tensor::zeros({count}));
  const troupe::data::batch_plan plan(train->samples, spec.shards, spec.workers,
                                      spec.batch, spec.seed);
  BOOST_REQUIRE(plan.steps_per_epoch() == spec.steps_per_epoch);
  const auto n = plan.local_batch();
  const auto f = train->features;
  std::vector<dv::tensor> grads{dv::tensor::empty({count}),
                                dv::tensor::empty({count})};
  for (std::int64_t step = 0; step < spec.total_steps(); ++step) {
    for (std::int32_t r = 0; r < 2; ++r) {
      const auto rows = plan.rows(step / spec.steps_per_epoch,
                                  step % spec.steps_per_epoch, r);
      auto x = dv::tensor::empty({n, f});
      auto y = dv::tensor::empty({n});
      for (std::int64_t i = 0; i < n; ++i) {
        const auto row = rows[static_cast<std::size_t>(i)];
        troupe::data::copy_row(*train, row, x.data() + i * f);
        y.data()[i] = train->y.data()[row];
      }
      net.set_context(spec.step_context(step, r));
      net.train_step(params, x, y, 1.0f / static_cast<float>(spec.batch),
                     grads[static_cast<std::size_t>(r)]);
    }
    auto sum = dv::tensor::empty({count});
    for (std::int64_t i = 0; i < count; ++i)
      sum.data()[i] = grads[0].data()[i] + grads[1].data()[i];
    auto cfg = spec.optimizer;
    cfg.lr = static_cast<float>(spec.lr_at(step + 1));
    auto next = dv::tensor::empty({count});
    dev.optimizer_step(cfg, step + 1, params, sum, state.data(), next);
    params = next;
  }
  return params.to_vector();
}

BOOST_FIXTURE_TEST_CASE(a_job_ends_with_the_parameters_of_a_plain_loop,
                        csv_job) {
  // Two workers on two data shards, three param shards, Adam with a
  // warmup and cosine schedule, dropout: every piece of the machinery
  // (sharding, the exchange, chunked publishing, the canonical sum) must
  // leave the arithmetic as a plain loop has it, bit for bit.
  const std::vector<std::string> sets{
      "cluster.workers=2",
      "data.shards=2",
      "model.partitions=3",
      "optimizer.type=adam",
      "optimizer.lr=0.01",
      "optimizer.schedule.type=cosine",
      "optimizer.schedule.warmup_steps=10",
      R"(model.layers=[{type="dense",units=16},{type="tanh"},{type="dropout",rate=0.25},{type="dense",units=3}])"};
  const auto expected = plain_loop(spec(sets));
  auto check = [&](const ta::run_result& r, const char* what) {
    BOOST_TEST(r.steps == 2 * (2000 / 32));
    BOOST_REQUIRE_EQUAL(r.params.size(), expected.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < expected.size(); ++i)
      differ += std::memcmp(&r.params[i], &expected[i], sizeof(float)) != 0;
    BOOST_TEST(differ == 0u, what << ": " << differ << " of " << expected.size()
                                  << " parameters differ");
  };
  check(ta::run_job(spec(sets)), "fault-free");
  // Killed actors are restarted and replayed: the same bits.
  auto chaos = sets;
  chaos.push_back(
      R"(chaos=[{kill="worker:1",at_step=20},{kill="param_shard:2",at_step=70},{kill="aggregator:0",at_step=100}])");
  chaos.push_back("supervision.snapshot_every=16");
  const auto r = ta::run_job(spec(chaos));
  BOOST_TEST(r.restarts == 3);
  check(r, "with kills");
}

BOOST_FIXTURE_TEST_CASE(several_workers_and_shards_train, csv_job) {
  auto r = ta::run_job(
      spec({"cluster.workers=4", "data.shards=2", "model.partitions=3"}));
  BOOST_TEST(r.workers == 4);
  BOOST_TEST(*r.test_accuracy > 0.8);
  BOOST_TEST(r.history.size() == 2u);
  BOOST_TEST(r.placement.count("worker:3") == 1u);
  BOOST_TEST(r.placement.count("data_shard:1") == 1u);
  auto again = ta::run_job(
      spec({"cluster.workers=4", "data.shards=2", "model.partitions=1"}));
  BOOST_TEST(again.params_digest == r.params_digest);
}

BOOST_FIXTURE_TEST_CASE(data_shard_sends_one_batch_per_credit, csv_job) {
  auto s = spec({});
  s.inputs = 4;
  s.outputs = 3;
  s.steps_per_epoch = 2000 / 32;
  caf::actor_system_config cfg;
  ta::register_roles(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto shard = sys.spawn<caf::actor>("data_shard",
                                     caf::make_message(s, std::int32_t{0}));
  BOOST_REQUIRE(shard);
  self->send(*shard, ta::credit_atom::value, std::int32_t{0}, std::int64_t{-1},
             std::int64_t{2}, caf::actor_cast<caf::actor>(self));
  std::vector<ta::batch_msg> got;
  // Each credit's batch, however long a loaded machine takes to make it;
  // then nothing more for a while (a batch without a credit would come
  // right behind the last one).
  auto receive_batches = [&](std::size_t n) {
    while (got.size() < n) {
      bool timed_out = false;
      self->receive([&](ta::batch_msg& b) { got.push_back(std::move(b)); },
                    caf::after(std::chrono::seconds(30)) >>
                        [&] { timed_out = true; });
      BOOST_REQUIRE_MESSAGE(!timed_out, "batch " << got.size() + 1
                                                 << " did not come in 30 s");
    }
    self->receive([&](ta::batch_msg& b) { got.push_back(std::move(b)); },
                  caf::after(std::chrono::milliseconds(300)) >> [] {});
    BOOST_TEST(got.size() == n);
  };
  receive_batches(2);
  self->send(*shard, ta::credit_atom::value, std::int32_t{0}, std::int64_t{0},
             std::int64_t{1}, caf::actor_cast<caf::actor>(self));
  receive_batches(3);
  BOOST_REQUIRE(got.size() == 3u);
  troupe::data::batch_plan plan(2000, 1, 1, 32, s.seed);
  auto ds = troupe::data::load_shared(ta::train_source(s));
  for (std::int64_t step = 0; step < 3; ++step) {
    BOOST_TEST(got[std::size_t(step)].step == step);
    const auto rows = plan.rows(0, step, 0);
    const auto& x = got[std::size_t(step)].x;
    BOOST_REQUIRE(x.dim(0) == 32);
    for (int i = 0; i < 32; ++i)
      BOOST_REQUIRE(std::memcmp(x.data() + i * 4,
                                ds->x.data() + rows[std::size_t(i)] * 4,
                                16) == 0);
  }
  self->send_exit(*shard, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(param_shard_sum_ignores_arrival_order) {
  // Three workers' gradients chosen so float addition order matters.
  auto s = tiny_spec(3, 1, 1, 10);
  s.optimizer.kind = dv::optimizer_kind::sgd;
  s.optimizer.lr = 1.0f;
  const float g[3][2] = {{1e8f, 1.0f}, {1.0f, -1e8f}, {-1e8f, 3.0f}};
  caf::actor_system_config cfg;
  ta::register_roles(cfg);
  caf::actor_system sys{cfg};
  auto run_order = [&](std::vector<int> order) {
    caf::scoped_actor self{sys};
    auto shard = sys.spawn<caf::actor>("param_shard",
                                       caf::make_message(s, std::int32_t{0}));
    BOOST_REQUIRE(shard);
    // The test stands in for the one aggregator of all three workers.
    std::vector<caf::actor> aggregators{caf::actor_cast<caf::actor>(self)};
    std::vector<std::int32_t> aggregator_of_worker{0, 0, 0};
    self->send(*shard, ta::wire_atom::value, aggregators, aggregator_of_worker,
               caf::actor{}, caf::actor_cast<caf::actor>(self));
    std::vector<float> out;
    self->receive([&](ta::params_msg& p) { BOOST_TEST(p.version == 0); },
                  caf::after(std::chrono::seconds(10)) >>
                      [] { BOOST_FAIL("no v0"); });
    for (int w : order) {
      ta::grad_msg m;
      m.worker = w;
      m.lo = w;
      m.hi = w + 1;
      m.step = 0;
      m.values = dv::tensor::from({2}, g[w]);
      self->send(*shard, m);
    }
    self->receive(
        [&](ta::params_msg& p) {
          BOOST_TEST(p.version == 1);
          out = p.values.to_vector();
        },
        caf::after(std::chrono::seconds(10)) >> [] { BOOST_FAIL("no v1"); });
    self->send_exit(*shard, caf::exit_reason::user_shutdown);
    return out;
  };
  auto a = run_order({0, 1, 2});
  auto b = run_order({2, 0, 1});
  auto c = run_order({1, 2, 0});
  BOOST_TEST(a == b);
  BOOST_TEST(a == c);
  // The canonical tree for 3 ranks is ((0 + 1) + 2).
  std::vector<float> init(2);
  auto layout = dv::nn::param_layout(1, s.layers);
  dv::nn::init_params(layout, s.seed, 0, 2, init.data());
  BOOST_TEST(a[0] == init[0] - ((g[0][0] + g[1][0]) + g[2][0]));
  BOOST_TEST(a[1] == init[1] - ((g[0][1] + g[1][1]) + g[2][1]));
}

BOOST_AUTO_TEST_CASE(hostile_spawns_and_frames_are_refused_not_crashes) {
  // What a peer can send a node: a role with an index its job lacks, and
  // gradient or parameter pieces that do not fit the model.
  auto s = tiny_spec(2, 1, 1, 10);
  caf::actor_system_config cfg;
  ta::register_roles(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  for (auto [role, index] :
       {std::pair<const char*, std::int32_t>{"data_shard", 100000},
        {"param_shard", -1},
        {"worker", 7}}) {
    auto a = sys.spawn<caf::actor>(role, caf::make_message(s, index));
    BOOST_REQUIRE(a);
    self->monitor(*a);
    self->receive(
        [&](caf::down_msg& dm) {
          const auto why = sys.render(dm.reason);
          BOOST_TEST_INFO(why);
          BOOST_TEST(why.find("does not exist in a job of") !=
                     std::string::npos);
        },
        caf::after(std::chrono::seconds(10)) >>
            [&] { BOOST_FAIL(std::string(role) + " did not end"); });
  }
  // A param shard given forged gradients stays up and still applies the
  // real ones.
  auto shard = sys.spawn<caf::actor>("param_shard",
                                     caf::make_message(s, std::int32_t{0}));
  BOOST_REQUIRE(shard);
  std::vector<caf::actor> aggregators{caf::actor_cast<caf::actor>(self)};
  std::vector<std::int32_t> aggregator_of_worker{0, 0};
  self->send(*shard, ta::wire_atom::value, aggregators, aggregator_of_worker,
             caf::actor{}, caf::actor_cast<caf::actor>(self));
  self->receive([&](ta::params_msg& p) { BOOST_TEST(p.version == 0); },
                caf::after(std::chrono::seconds(10)) >>
                    [] { BOOST_FAIL("no v0"); });
  auto grad = [](std::int32_t lo, std::int32_t hi, std::int64_t step,
                 std::int64_t offset, std::int64_t n) {
    ta::grad_msg m;
    m.worker = lo;
    m.lo = lo;
    m.hi = hi;
    m.step = step;
    m.offset = offset;
    m.values = dv::tensor::zeros({n});
    return m;
  };
  self->monitor(*shard);
  for (auto m :
       {grad(0, 1, 0, 1, 5), grad(0, 1, 0, -3, 2), grad(0, 9, 0, 0, 2),
        grad(1, 0, 0, 0, 2), grad(0, 1, -4, 0, 2), grad(0, 1, 1 << 30, 0, 2)})
    self->send(*shard, m);
  self->send(*shard, grad(0, 1, 0, 0, 2));
  self->send(*shard, grad(1, 2, 0, 0, 2));
  self->receive([&](ta::params_msg& p) { BOOST_TEST(p.version == 1); },
                [&](caf::down_msg& dm) {
                  BOOST_FAIL("the shard died: " + sys.render(dm.reason));
                },
                caf::after(std::chrono::seconds(10)) >>
                    [] { BOOST_FAIL("no v1"); });
  self->send_exit(*shard, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(a_node_checks_every_spawn_request_again) {
  auto s = tiny_spec(2, 3, 2, 4);
  s.input_shape = {3};
  s.batch = 4;
  temp_dir root, elsewhere;
  write_text(root.file("train.csv"), "1,2,3,0\n");
  write_text(elsewhere.file("train.csv"), "1,2,3,0\n");
  s.train = {root.file("train.csv")};
  const auto check = [&](const std::string& role, const caf::message& m,
                         std::int64_t memory = 0) {
    return ta::check_spawn_request(role, m, root.path.string(), memory);
  };
  BOOST_TEST(check("worker", caf::make_message(s, std::int32_t{1})) == "");
  BOOST_TEST(check("data_shard", caf::make_message(s, std::int32_t{0})) == "");
  BOOST_TEST(check("worker", caf::make_message(s, std::int32_t{2})) ==
             "worker index 2 is outside the job's 0..1");
  BOOST_TEST(check("worker", caf::make_message(std::string("x"))) ==
             "the arguments for worker are not of its kind");
  BOOST_TEST(
      check("aggregator", caf::make_message(s, std::int32_t{0}, std::int32_t{0},
                                            std::int32_t{3})) ==
      "aggregator ranks [0, 3) are outside the job's 2 workers");
  auto huge = s;
  huge.workers = 100000;
  BOOST_TEST(check("worker", caf::make_message(huge, std::int32_t{0})) ==
             "the job spec's sizes are out of range");
  auto bad_model = s;
  bad_model.input_shape = {1, 2, 2};
  bad_model.layers = {{dv::nn::layer_kind::conv2d, 4}};
  bad_model.layers[0].kernel = 3;
  BOOST_TEST(check("worker", caf::make_message(bad_model, std::int32_t{0}))
                 .rfind("the job spec's model does not hold: ", 0) == 0u);
  auto wide = s;
  wide.layers = {{dv::nn::layer_kind::dense, 1 << 24}};
  BOOST_TEST(check("worker", caf::make_message(wide, std::int32_t{0}),
                   std::int64_t{1} << 30)
                 .rfind("a worker of this job would need about ", 0) == 0u);
  auto outside = s;
  outside.train = {elsewhere.file("train.csv")};
  BOOST_TEST(check("data_shard", caf::make_message(outside, std::int32_t{0}))
                 .find("is outside the node's --data-root") !=
             std::string::npos);
  outside.train = {root.file("../x/../" + std::string("train.csv"))};
  BOOST_TEST(check("data_shard", caf::make_message(outside, std::int32_t{0})) !=
             "");
  BOOST_TEST(ta::redact_quoted(
                 "f.csv:3:2: cell \"password1\" is not a finite number") ==
             "f.csv:3:2: cell \"<withheld>\" is not a finite number");
}

BOOST_AUTO_TEST_CASE(worker_parameters_before_its_wiring_still_make_it_ready) {
  // Parameters come from the aggregator, the wiring from the coordinator:
  // no order holds between them, and the ready must reach the coordinator
  // either way (it once went to the not yet known coordinator and was lost).
  auto s = tiny_spec(1, 3, 2, 1);
  s.exchange_only = true; // ready needs no batch
  caf::actor_system_config cfg;
  ta::register_roles(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto worker =
      sys.spawn<caf::actor>("worker", caf::make_message(s, std::int32_t{0}));
  BOOST_REQUIRE(worker);
  ta::params_msg p;
  p.values = dv::tensor::zeros({3 * 2 + 2});
  self->send(*worker, p);
  // Let it take the parameters before it learns who its coordinator is.
  self->receive(caf::after(std::chrono::milliseconds(100)) >> [] {});
  auto me = caf::actor_cast<caf::actor>(self);
  self->send(*worker, ta::wire_atom::value, me, caf::actor{}, me,
             std::vector<caf::actor>{});
  bool ready = false;
  self->receive(
      [&](ta::ready_atom, const std::string& role, std::int32_t rank) {
        ready = role == "worker" && rank == 0;
      },
      caf::after(std::chrono::seconds(10)) >> [] {});
  BOOST_TEST(ready);
  self->send_exit(*worker, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(worker_trains_on_the_batch_of_its_step_in_any_order) {
  // Batches from a data shard on another node can overtake each other while
  // CAF moves the traffic onto a direct connection; step t must still use
  // the batch of step t.
  auto s = tiny_spec(1, 3, 2, 2);
  s.batch = 4;
  caf::actor_system_config cfg;
  ta::register_roles(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto worker =
      sys.spawn<caf::actor>("worker", caf::make_message(s, std::int32_t{0}));
  BOOST_REQUIRE(worker);
  dv::nn::model net(dv::cpu(), s.inputs, s.layers, s.loss);
  auto params = dv::tensor::empty({net.param_count()});
  dv::nn::init_params(net.layout(), 7, 0, net.param_count(), params.data());
  auto batch = [&](std::int64_t step) {
    ta::batch_msg b;
    b.step = step;
    b.x = dv::tensor::empty({4, 3});
    for (int i = 0; i < 12; ++i)
      b.x.data()[i] = dv::unit_float(100 + std::uint64_t(step), i) - 0.5f;
    b.y = dv::tensor::from({4}, std::vector<float>{0, 1, 1, 0});
    return b;
  };
  auto me = caf::actor_cast<caf::actor>(self);
  self->send(*worker, ta::wire_atom::value, me, me, me,
             std::vector<caf::actor>{});
  ta::params_msg p;
  p.values = params;
  self->send(*worker, p);
  self->send(*worker, batch(1)); // step 1 first
  self->send(*worker, batch(0));
  self->send(*worker, ta::start_atom::value);
  dv::tensor got;
  bool done = false;
  while (!done)
    self->receive(
        [&](ta::grad_msg& g) {
          BOOST_TEST(g.step == 0);
          got = g.values;
          done = true;
        },
        [](ta::ready_atom, const std::string&, std::int32_t) {},
        [](ta::credit_atom, std::int32_t, std::int64_t, std::int64_t,
           const caf::actor&) {},
        [](ta::resubscribe_atom, std::int32_t, std::int64_t, std::int64_t,
           const caf::actor&) {},
        [](const ta::progress_msg&) {},
        caf::after(std::chrono::seconds(10)) >>
            [&] { BOOST_FAIL("no gradient"); });
  auto want = dv::tensor::empty({net.param_count()});
  auto b0 = batch(0);
  net.train_step(params, b0.x, b0.y, 1.0f / 4, want);
  BOOST_TEST(got.to_vector() == want.to_vector());
  self->send_exit(*worker, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()

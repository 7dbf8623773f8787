#include "actors/job_spec.hpp"
#include "actors/graph.hpp"

#include "data/test_files.hpp"
#include "modelio/onnx_model.hpp"
#include "runtime/config.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>

namespace ta = troupe::actors;
using troupe::runtime::config;
using troupe::runtime::config_error;

namespace {

const std::string minimal = R"([data]
format = "csv"
train = "t.csv"
[model]
layers = [ { type = "dense", units = 3 } ]
)";

std::string error_of(const std::string& text,
                     const std::vector<std::string>& sets = {}) {
  try {
    auto c = config::parse(text, "p.toml", sets);
    ta::parse_job_spec(c);
  } catch (const config_error& e) {
    return e.what();
  }
  return "(no error)";
}

} // namespace

BOOST_AUTO_TEST_SUITE(job_spec_suite)

BOOST_AUTO_TEST_CASE(example_pipeline_parses) {
  auto c = config::load_file(std::string(TROUPE_SOURCE_DIR) +
                             "/examples/fashion_mnist.toml");
  auto s = ta::parse_job_spec(c);
  BOOST_TEST(s.name == "fashion-mnist-mlp");
  BOOST_TEST(s.epochs == 3);
  BOOST_TEST(s.batch == 64);
  BOOST_TEST(s.layers.size() == 3u);
  BOOST_TEST(s.layers[0].units == 128);
  BOOST_TEST(s.partitions == 2);
  BOOST_TEST(s.workers == 2);
  BOOST_TEST(s.optimizer.lr == 0.001f);
  BOOST_TEST(s.seed == 42u);
}

BOOST_AUTO_TEST_CASE(defaults) {
  auto c = config::parse(minimal, "p.toml");
  auto s = ta::parse_job_spec(c);
  BOOST_TEST(s.mode == "sync");
  BOOST_TEST(s.workers == 1);
  BOOST_TEST(s.train == (std::vector<std::string>{"t.csv"}));
}

BOOST_AUTO_TEST_CASE(bad_values_name_the_key) {
  BOOST_TEST(error_of(minimal, {"optimizer.lr=-0.1"}) ==
             "--set optimizer.lr=-0.1: optimizer.lr: -0.1 is out of range (0, "
             "1000000]");
  BOOST_TEST(error_of(minimal, {"model.layers=[{type=\"conv\"}]"})
                 .find("model.layers[0].type: unknown layer type \"conv\"") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal, {"job.epochs=\"three\""})
                 .find("job.epochs: expected an integer, got a string") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal, {"job.mode=turbo"})
                 .find("job.mode: \"turbo\" is not one of") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal + "[optimizer]\nlr = 0.1\nbeta = 3\n")
                 .rfind("p.toml:8:8: optimizer.beta: unknown key (did you mean "
                        "beta1?); [optimizer] takes: ",
                        0) == 0);
  BOOST_TEST(
      error_of(minimal,
               {"model.layers=[{type=\"dense\",units=3},{type=\"softmax\"}]"})
          .find("would apply softmax twice") != std::string::npos);
  BOOST_TEST(error_of(minimal, {"model.layers=[{type=\"relu\"}]"})
                 .find("needs at least one dense or conv2d layer") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal, {"model.layers=[{type=\"dense\"}]"})
                 .find("a dense layer needs units") != std::string::npos);
  BOOST_TEST(error_of("[model]\nlayers = [ { type = \"dense\", units = 3 } ]\n")
                 .find("data.train: required") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(chaos_events_parse_and_hit_successive_incarnations) {
  auto c = config::parse(minimal + R"(
[[chaos]]
kill = "worker:0"
at_step = 40
[[chaos]]
kill = "param_shard:1"
at_step = 10
[[chaos]]
kill = "worker:0"
at_step = 20
)",
                         "p.toml");
  auto s = ta::parse_job_spec(c);
  BOOST_REQUIRE_EQUAL(s.chaos.size(), 3u);
  BOOST_TEST(s.chaos[1].target() == "param_shard:1");
  // worker:0 dies at step 20 first, then its first restart at step 40.
  BOOST_TEST(s.chaos_kill_step(ta::role::worker, 0) == 20);
  s.incarnation = 1;
  BOOST_TEST(s.chaos_kill_step(ta::role::worker, 0) == 40);
  BOOST_TEST(s.chaos_kill_step(ta::role::param_shard, 1) == -1);
  s.incarnation = 2;
  BOOST_TEST(s.chaos_kill_step(ta::role::worker, 0) == -1);
  s.incarnation = 0;
  BOOST_TEST(s.chaos_kill_step(ta::role::param_shard, 1) == 10);
  BOOST_TEST(s.chaos_kill_step(ta::role::worker, 1) == -1);

  {
    auto n = config::parse(minimal + R"([[chaos]]
freeze = "node:node1"
at_step = 7
)",
                           "p.toml");
    auto ns = ta::parse_job_spec(n);
    BOOST_REQUIRE_EQUAL(ns.chaos.size(), 1u);
    BOOST_TEST(ns.chaos[0].action == "freeze");
    BOOST_TEST(ns.chaos[0].role == "node");
    BOOST_TEST(ns.chaos[0].node == "node1");
    BOOST_TEST(ns.chaos[0].target() == "node:node1");
    for (auto r : ta::all_roles) // a node fault kills no actor by itself
      BOOST_TEST(ns.chaos_kill_step(r, 0) == -1);
  }
  auto chaos = [&](const std::string& entry) {
    return error_of(minimal + "[[chaos]]\n" + entry);
  };
  BOOST_TEST(chaos("kill = \"worker\"\nat_step = 1\n")
                 .find("chaos[0].kill: \"worker\" is not ROLE:INDEX or "
                       "node:NAME") != std::string::npos);
  BOOST_TEST(chaos("kill = \"wizard:0\"\nat_step = 1\n")
                 .find("unknown role \"wizard\"") != std::string::npos);
  BOOST_TEST(chaos("kill = \"worker:x\"\nat_step = 1\n")
                 .find("\"x\" is not an index") != std::string::npos);
  BOOST_TEST(chaos("kill = \"worker:0\"\n").find("chaos[0]: needs at_step") !=
             std::string::npos);
  BOOST_TEST(chaos("freeze = \"worker:0\"\nat_step = 1\n")
                 .find("only a node can be frozen") != std::string::npos);
  BOOST_TEST(chaos("kill = \"worker:0\"\nfreeze = \"node:a\"\nat_step = 1\n")
                 .find("needs exactly one of kill") != std::string::npos);
  BOOST_TEST(
      chaos("kill = \"worker:0\"\nat_step = -2\n").find("chaos[0].at_step") !=
      std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_slow_worker_needs_both_its_rank_and_its_pace) {
  // Either alone would silently do nothing.
  BOOST_TEST(error_of(minimal, {"testing.slow_ms=5"})
                 .find("testing.slow_ms: needs testing.slow_worker (the worker "
                       "rank to slow down)") != std::string::npos);
  BOOST_TEST(error_of(minimal, {"testing.slow_worker=0"})
                 .find("testing.slow_worker: needs testing.slow_ms") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal, {"testing.slow_worker=3", "testing.slow_ms=5",
                                "cluster.workers=2"})
                 .find("testing.slow_worker: 3 is not a worker rank "
                       "(cluster.workers = 2)") != std::string::npos);
  BOOST_TEST(error_of(minimal, {"testing.slow_worker=1", "testing.slow_ms=5",
                                "cluster.workers=2"}) == "(no error)");
}

BOOST_AUTO_TEST_CASE(resolve_checks_data_against_model) {
  auto c =
      config::parse(minimal, "p.toml", {"cluster.workers=2", "data.batch=10"});
  auto s = ta::parse_job_spec(c);
  ta::data_facts train{1000, 5, 0, 1, "t", {}, {}};
  BOOST_CHECK_THROW(ta::resolve_job_spec(s, train, nullptr),
                    config_error); // 3 units vs 1 target
  auto c2 =
      config::parse(minimal, "p.toml",
                    {"cluster.workers=2", "data.batch=10", "model.loss=mse",
                     "model.layers=[{type=\"dense\",units=1}]"});
  auto s2 = ta::parse_job_spec(c2);
  ta::resolve_job_spec(s2, train, nullptr);
  BOOST_TEST(s2.inputs == 5);
  BOOST_TEST(s2.steps_per_epoch == 100);
  auto c3 =
      config::parse(minimal, "p.toml", {"data.batch=3", "cluster.workers=2"});
  auto s3 = ta::parse_job_spec(c3);
  ta::data_facts cls{1000, 5, 3, 1, "t", {}, {}};
  try {
    ta::resolve_job_spec(s3, cls, nullptr);
    BOOST_FAIL("expected an error");
  } catch (const config_error& e) {
    BOOST_TEST(std::string(e.what()).find("data.batch = 3 must be a positive "
                                          "multiple of cluster.workers = 2") ==
               0u);
  }
}

BOOST_AUTO_TEST_CASE(shards_split_by_size_at_block_starts) {
  ta::job_spec s;
  s.inputs = 784;
  s.layers = {{troupe::devices::nn::layer_kind::dense, 128},
              {troupe::devices::nn::layer_kind::relu, 0},
              {troupe::devices::nn::layer_kind::dense, 10}};
  const std::int64_t total = 784 * 128 + 128 + 128 * 10 + 10;
  // Two shards: the first layer's 784 rows go in blocks of 262 (at least
  // 256 rows each); the cut lands on row 524, the block start nearest half
  // the parameters.
  s.partitions = 2;
  BOOST_TEST(s.shard_begin(0, total) == 0);
  BOOST_TEST(s.shard_begin(1, total) == 524 * 128);
  BOOST_TEST(s.shard_begin(2, total) == total);
  // Any count: contiguous, non-empty, covering everything; where the
  // blocks are too few (5 starts past 0, 8 cuts for 9 shards), the even
  // split.
  for (std::int64_t p = 1; p <= 9; ++p) {
    s.partitions = p;
    std::int64_t previous = 0;
    for (std::int64_t i = 1; i <= p; ++i) {
      const auto b = s.shard_begin(i, total);
      BOOST_TEST(b > previous, "partitions " << p << " shard " << i);
      previous = b;
    }
    BOOST_TEST(previous == total);
  }
  s.partitions = 9;
  BOOST_TEST(s.shard_begin(4, total) == total * 4 / 9);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(graph_api)

BOOST_AUTO_TEST_CASE(builds_every_layer_as_its_pipeline_twin_does) {
  auto g = troupe::graph("cnn")
               .idx_data("train-images", "train-labels")
               .input_shape({1, 28, 28})
               .conv2d(32, 3, 1, 1)
               .batch_norm()
               .relu()
               .max_pool2d(2)
               .conv2d(8, 3)
               .avg_pool2d(3, 2, 1)
               .flatten()
               .layer_norm(1e-6)
               .dropout(0.25)
               .dense(10);
  const auto s = g.spec();
  namespace nn = troupe::devices::nn;
  BOOST_TEST(s.input_shape == (troupe::devices::shape_t{1, 28, 28}));
  BOOST_REQUIRE(s.layers.size() == 10u);
  BOOST_TEST(nn::to_string(s.layers[0].kind) == std::string("conv2d"));
  BOOST_TEST(s.layers[0].units == 32);
  BOOST_TEST(s.layers[0].padding == 1);
  BOOST_TEST(s.layers[1].momentum == 0.1f);
  BOOST_TEST(s.layers[3].stride == 2); // stride 0: the kernel
  BOOST_TEST(nn::to_string(s.layers[5].kind) == std::string("avg_pool2d"));
  BOOST_TEST(s.layers[5].padding == 1);
  BOOST_TEST(s.layers[7].eps == 1e-6f);
  BOOST_TEST(s.layers[8].rate == 0.25f);
  // The shapes as the job will check them: 28 -> 14 -> 12 -> 6.
  const auto shapes = nn::infer_shapes(s.input_shape, s.layers);
  BOOST_TEST(troupe::devices::to_string(shapes[6]) == "[288]");
  // A bad rate is refused through the same checks as a pipeline file.
  auto bad = troupe::graph("bad").idx_data("a", "b").dropout(1.5).dense(10);
  BOOST_TEST(error_of(bad.to_toml())
                     .find("model.layers[0].rate: a dropout rate must be in "
                           "[0, 1), got 1.5") != std::string::npos,
             error_of(bad.to_toml()));
}

BOOST_AUTO_TEST_CASE(graph_saves_the_model_its_run_trained) {
  troupe::data::testing::temp_dir dir;
  std::string csv = "x0,x1,y\n";
  for (int i = 0; i < 64; ++i)
    csv += std::to_string((i % 7) * 0.25) + "," +
           std::to_string((i % 5) * 0.5) + "," + std::to_string(i % 2) + "\n";
  troupe::data::testing::write_text(dir.file("d.csv"), csv);
  auto g = troupe::graph("saved")
               .csv_data({dir.file("d.csv")}, {dir.file("d.csv")}, "y", 2)
               .batch(16)
               .dense(4)
               .tanh()
               .dense(2)
               .epochs(2);
  BOOST_CHECK_THROW(g.save(dir.file("early.onnx")), std::logic_error);
  const auto r = g.run();
  g.save(dir.file("m.onnx"));
  const auto m = troupe::modelio::load_onnx(dir.file("m.onnx"));
  BOOST_TEST(m.params == r.params);
  BOOST_TEST(m.params_digest == r.params_digest);
  BOOST_TEST(m.classes == 2);
  BOOST_TEST(m.input_format == "csv");
  BOOST_TEST(m.extra.at("target") == "y");
  BOOST_TEST(m.input == (troupe::devices::shape_t{2}));
  BOOST_TEST(m.epoch == 2);
}

BOOST_AUTO_TEST_CASE(schedules_give_the_lr_of_each_step) {
  auto spec_of = [](const std::string& extra) {
    auto c =
        config::parse(minimal + "[optimizer]\nlr = 0.1\n" + extra, "p.toml");
    auto s = ta::parse_job_spec(c);
    s.steps_per_epoch = 100; // 100 steps in all (1 epoch)
    return s;
  };
  namespace tt = boost::test_tools;
  auto constant = spec_of("");
  BOOST_TEST(constant.lr_at(1) == 0.1, tt::tolerance(1e-6));
  BOOST_TEST(constant.lr_at(100) == 0.1, tt::tolerance(1e-6));
  auto step = spec_of(
      "[optimizer.schedule]\ntype = \"step\"\nstep_size = 30\ngamma = 0.5\n");
  BOOST_TEST(step.lr_at(30) == 0.1, tt::tolerance(1e-6));
  BOOST_TEST(step.lr_at(31) == 0.05, tt::tolerance(1e-6));
  BOOST_TEST(step.lr_at(61) == 0.025, tt::tolerance(1e-6));
  auto cosine = spec_of("[optimizer.schedule]\ntype = \"cosine\"\n"
                        "warmup_steps = 10\nmin_lr = 0.01\n");
  BOOST_TEST(cosine.lr_at(1) == 0.01, tt::tolerance(1e-6)); // 1/10 of lr
  BOOST_TEST(cosine.lr_at(5) == 0.05, tt::tolerance(1e-6));
  BOOST_TEST(cosine.lr_at(10) == 0.1, tt::tolerance(1e-6));
  BOOST_TEST(cosine.lr_at(11) == 0.1, tt::tolerance(1e-6));   // the peak
  BOOST_TEST(cosine.lr_at(100) == 0.01, tt::tolerance(1e-6)); // the floor
  // After the warmup, t = 0 .. 89 over steps 11 .. 100: step 55 is t = 44.
  const double mid = 0.01 + 0.09 * 0.5 * (1 + std::cos(M_PI * 44.0 / 89.0));
  BOOST_TEST(cosine.lr_at(55) == mid, tt::tolerance(1e-6));
  // The string form, and AdamW's default decay.
  auto s = spec_of("type = \"adamw\"\nschedule = \"cosine\"\n");
  BOOST_TEST(s.schedule.type == "cosine");
  BOOST_TEST(s.optimizer.weight_decay == 0.01f);
  // async: each worker's gradient is a version; 2 workers, versions 3 and
  // 4 are step 2.
  auto a = spec_of("[job]\nmode = \"async\"\n[cluster]\nworkers = 2\n");
  BOOST_TEST(a.step_of_version(3) == 2);
  BOOST_TEST(a.step_of_version(4) == 2);
  BOOST_TEST(constant.step_of_version(4) == 4);
}

BOOST_AUTO_TEST_CASE(bad_schedules_and_clipping_name_the_key) {
  const auto base = minimal + "[optimizer]\n";
  BOOST_TEST(error_of(base + "[optimizer.schedule]\ntype = \"cosine\"\n"
                             "gamma = 0.5\n")
                 .find("optimizer.schedule.gamma: only used with type = "
                       "\"step\"") != std::string::npos);
  BOOST_TEST(error_of(base + "[optimizer.schedule]\ntype = \"step\"\n")
                 .find("optimizer.schedule.step_size: required") !=
             std::string::npos);
  BOOST_TEST(error_of(base + "[optimizer.schedule]\ntype = \"cosine\"\n"
                             "warmpu_steps = 5\n")
                 .find("optimizer.schedule.warmpu_steps") != std::string::npos);
  BOOST_TEST(
      error_of(base + "schedule = \"linear\"\n").find("optimizer.schedule") !=
      std::string::npos);
  BOOST_TEST(error_of(base + "schedule = \"step\"\n").find("needs step_size") !=
             std::string::npos);
  BOOST_TEST(error_of(base + "clip_norm = -1\n").find("optimizer.clip_norm") !=
             std::string::npos);
  BOOST_TEST(error_of(base + "clip_norm = 1\n[job]\nmode = \"async\"\n")
                 .find("use mode = \"sync\"") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(versions_per_epoch_follow_the_mode) {
  ta::job_spec s;
  s.steps_per_epoch = 10;
  s.workers = 3;
  s.mode = "sync";
  BOOST_TEST(s.versions_per_epoch() == 10);
  BOOST_TEST(s.step_of_version(10) == 10);
  for (const char* mode : {"async", "ssp"}) {
    s.mode = mode;
    BOOST_TEST(s.versions_per_epoch() == 30);
    // The last version of epoch 1 belongs to its last step.
    BOOST_TEST(s.step_of_version(s.versions_per_epoch()) == 10);
  }
}

BOOST_AUTO_TEST_SUITE_END()

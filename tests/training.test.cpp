// Whole training runs (Release build only): accuracy of the examples,
// digests that do not depend on partitioning, CSV regression.
#include "tests/program.hpp"

#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

using namespace troupe::testing;
using troupe::data::testing::temp_dir;
using troupe::data::testing::write_text;
using json = nlohmann::json;

namespace {

bool have_fashion() {
  return std::filesystem::exists(fashion + "train-images-idx3-ubyte.gz");
}

json run_json(const std::vector<std::string>& args) {
  std::vector<std::string> all{"run"};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back("--json");
  all.push_back("-q");
  auto o = run_troupe(all, 600);
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE_EQUAL(o.code, 0);
  return json::parse(o.out);
}

// The model a run saved, evaluated three ways: troupe eval (the run's
// figures to 0.0005), an ONNX evaluation outside troupe (NumPy,
// tools/onnx_reference.py, after onnx.checker) to 0.001, and troupe
// predict, whose classes the outside evaluation must agree with.
void check_saved_model(const std::string& pipeline, const std::string& model,
                       const json& run) {
  const double acc = run["test_accuracy"].get<double>();
  auto e = run_troupe({"eval", model, pipeline, "--json"}, 300);
  BOOST_TEST_INFO("stderr: " << e.err);
  BOOST_REQUIRE_EQUAL(e.code, 0);
  const auto ev = json::parse(e.out);
  BOOST_TEST_MESSAGE(model << ": run " << acc << ", troupe eval "
                           << ev["test_accuracy"]);
  BOOST_TEST(std::abs(ev["test_accuracy"].get<double>() - acc) <= 0.0005);
  BOOST_TEST(std::abs(ev["test_loss"].get<double>() -
                      run["test_loss"].get<double>()) <= 1e-4);
  temp_dir dir;
  const auto csv = dir.file("pred.csv");
  auto p = run_troupe({"predict", model, "--data",
                       fashion + "t10k-images-idx3-ubyte.gz", "--out", csv},
                      300);
  BOOST_TEST_INFO("stderr: " << p.err);
  BOOST_REQUIRE_EQUAL(p.code, 0);
  auto r = run_program_at(
      "/usr/bin/python3",
      {std::string(TROUPE_SOURCE_DIR) + "/tools/onnx_reference.py", model,
       "--idx", fashion + "t10k-images-idx3-ubyte.gz",
       fashion + "t10k-labels-idx1-ubyte.gz", "--compare", csv},
      300);
  BOOST_TEST_INFO("stderr: " << r.err);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  const auto ref = json::parse(r.out);
  BOOST_TEST_MESSAGE(model << ": outside evaluation " << ref.dump());
  BOOST_TEST(std::abs(ref["accuracy"].get<double>() - acc) <= 0.001);
  BOOST_TEST(ref["agree_with_predict"].get<double>() >= 0.999);
}

} // namespace

BOOST_AUTO_TEST_SUITE(training)

BOOST_AUTO_TEST_CASE(fashion_mnist_mlp_reaches_0_855) {
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  temp_dir dir;
  const auto model = dir.file("mlp.onnx");
  auto j = run_json({example("fashion_mnist.toml"), "--save", model});
  BOOST_TEST_MESSAGE("mlp: " << j.dump());
  check_saved_model(example("fashion_mnist.toml"), model, j);
  BOOST_TEST(j["epochs"] == 3);
  BOOST_TEST(j["workers"] == 2);
  BOOST_TEST(j["nodes"] == 2); // the embedded default: two node processes
  std::set<std::string> nodes;
  for (auto& [actor, node] : j["placement"].items())
    nodes.insert(node.get<std::string>());
  BOOST_TEST(nodes.size() == 2u);
  BOOST_TEST(j["test_accuracy"].get<double>() >= 0.855);
  BOOST_TEST(j["samples_per_s"].get<double>() > 0);
  BOOST_TEST(j["history"].size() == 3u);
}

BOOST_AUTO_TEST_CASE(fashion_mnist_cnn_reaches_0_90) {
  // examples/fashion_mnist_cnn.toml as it is: 5 epochs, about 2.5 minutes
  // on two cores.
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  temp_dir dir;
  const auto model = dir.file("cnn.onnx");
  auto j = run_json({example("fashion_mnist_cnn.toml"), "--save", model});
  BOOST_TEST_MESSAGE("cnn: " << j.dump());
  BOOST_TEST(j["param_count"] == 421642);
  BOOST_TEST(j["test_accuracy"].get<double>() >= 0.90);
  check_saved_model(example("fashion_mnist_cnn.toml"), model, j);
}

BOOST_AUTO_TEST_CASE(sensors_example_classifies_named_states) {
  // examples/sensors.toml from another folder: its data paths are relative
  // to the file; its classes are names.
  temp_dir dir;
  const auto model = dir.file("sensors.onnx");
  auto o = run_program_at(
      "/bin/sh",
      {"-c", fmt::format("cd / && {}/bin/troupe run {} --json -q "
                         "--save {}",
                         TROUPE_BINARY_DIR, quote(example("sensors.toml")),
                         quote(model))});
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE_EQUAL(o.code, 0);
  const auto j = json::parse(o.out);
  BOOST_TEST_MESSAGE("sensors: " << j["test_accuracy"] << " "
                                 << j["test_metrics"].dump());
  BOOST_TEST(j["test_accuracy"].get<double>() >= 0.9);
  std::vector<std::string> names;
  for (const auto& c : j["test_metrics"]["per_class"])
    names.push_back(c["class"].get<std::string>());
  BOOST_TEST(names == (std::vector<std::string>{"faulty", "idle", "overloaded",
                                                "running"}),
             boost::test_tools::per_element());
  auto p = run_troupe(
      {"predict", model, "--data", example("data/sensors-test.csv")});
  BOOST_TEST_INFO("stderr: " << p.err);
  BOOST_REQUIRE_EQUAL(p.code, 0);
  BOOST_TEST(p.out.rfind("label,p_faulty,p_idle,p_overloaded,p_running\n", 0) ==
             0);
  // The predicted names against the file's own: the run's accuracy.
  std::istringstream want(slurp(example("data/sensors-test.csv")));
  std::istringstream got(p.out);
  std::string w, g;
  std::getline(want, w);
  std::getline(got, g);
  int right = 0, rows = 0;
  while (std::getline(want, w) && std::getline(got, g)) {
    right += w.substr(w.rfind(',') + 1) == g.substr(0, g.find(',')) ? 1 : 0;
    ++rows;
  }
  BOOST_TEST(rows == 500);
  BOOST_TEST(right / 500.0 == j["test_accuracy"].get<double>(),
             boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(
    cosine_warmup_and_clipping_train_as_well_and_keep_digests) {
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  const std::vector<std::string> tuned{
      "--set", "optimizer.lr=0.003",
      "--set", "optimizer.schedule={type=\"cosine\",warmup_steps=200}",
      "--set", "optimizer.clip_norm=1.0"};
  auto with = [&](std::vector<std::string> args) {
    std::vector<std::string> all{example("fashion_mnist.toml")};
    all.insert(all.end(), tuned.begin(), tuned.end());
    all.insert(all.end(), args.begin(), args.end());
    return run_json(all);
  };
  // At least the constant-lr accuracy of the example (3 epochs).
  const auto constant = run_json({example("fashion_mnist.toml")});
  const auto scheduled = with({});
  BOOST_TEST_MESSAGE("constant lr " << constant["test_accuracy"]
                                    << ", cosine+warmup+clip "
                                    << scheduled["test_accuracy"]);
  BOOST_TEST(scheduled["test_accuracy"].get<double>() >=
             constant["test_accuracy"].get<double>());
  BOOST_TEST(scheduled["params_digest"] != constant["params_digest"]);
  // The lr of the last epoch is the cosine's floor.
  BOOST_TEST(scheduled["history"][2]["lr"].get<double>() == 0.0,
             boost::test_tools::tolerance(1e-12));
  // The same bits over partitions and nodes (one epoch each).
  std::string first;
  for (const char* p :
       {"model.partitions=1", "model.partitions=2", "model.partitions=4",
        "cluster.local_nodes=1", "cluster.local_nodes=3"}) {
    auto d = with({"--set", "job.epochs=1", "--set", p})["params_digest"]
                 .get<std::string>();
    if (first.empty())
      first = d;
    BOOST_TEST(d == first, p);
  }
}

BOOST_AUTO_TEST_CASE(clipped_steps_keep_their_digest_through_kills) {
  // Restarted param shards replay clipped steps: the coordinator keeps
  // each step's scale for them.
  const std::vector<std::string> base{
      example("sensors.toml"),        "--set", "model.partitions=2", "--set",
      "optimizer.clip_norm=0.5",      "--set", "job.epochs=3",       "--set",
      "supervision.snapshot_every=50"};
  const auto clean = run_json(base);
  for (
      const char* chaos :
      {R"(chaos=[{kill="param_shard:1",at_step=100},{kill="worker:0",at_step=150}])",
       R"(chaos=[{kill="param_shard:0",at_step=70}])"}) {
    auto args = base;
    args.insert(args.end(), {"--set", chaos, "--set", "cluster.local_nodes=2"});
    const auto j = run_json(args);
    BOOST_TEST(j["restarts"].get<int>() >= 1, chaos);
    BOOST_TEST(j["params_digest"] == clean["params_digest"], chaos);
  }
  // Clipping changes the training (the norm is above 0.5 at times).
  auto unclipped = base;
  unclipped[4] = "optimizer.clip_norm=0";
  BOOST_TEST(run_json(unclipped)["params_digest"] != clean["params_digest"]);
}

BOOST_AUTO_TEST_CASE(early_stopping_keeps_and_saves_the_best_epoch) {
  // The sensors example with a learning rate too high to settle: the test
  // loss stops improving within a few epochs of 30.
  temp_dir dir;
  const auto model = dir.file("best.onnx");
  const auto j = run_json({example("sensors.toml"), "--set", "job.epochs=30",
                           "--set", "job.patience=3", "--set",
                           "optimizer.lr=0.05", "--save", model});
  const auto& h = j["history"];
  BOOST_TEST_MESSAGE("early stopping: best epoch " << j["best_epoch"] << " of "
                                                   << h.size());
  BOOST_TEST(j["stopped_early"] == true);
  const auto best = j["best_epoch"].get<std::int64_t>();
  BOOST_REQUIRE(best >= 1);
  // It stopped `patience` epochs after the best, well before epoch 30 ...
  BOOST_TEST(static_cast<std::int64_t>(h.size()) == best + 3);
  BOOST_TEST(h.size() < 30u);
  // ... the best epoch has the lowest test loss of those run ...
  for (const auto& e : h)
    BOOST_TEST(
        e["test_loss"].get<double>() >=
        h[static_cast<std::size_t>(best - 1)]["test_loss"].get<double>());
  // ... and the result and the saved model are that epoch's.
  BOOST_TEST(j["test_loss"] ==
             h[static_cast<std::size_t>(best - 1)]["test_loss"]);
  auto e = run_troupe({"eval", model, example("sensors.toml"), "--json"});
  BOOST_TEST_INFO("stderr: " << e.err);
  BOOST_REQUIRE_EQUAL(e.code, 0);
  const auto ev = json::parse(e.out);
  BOOST_TEST(ev["test_loss"].get<double>() == j["test_loss"].get<double>(),
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ev["test_accuracy"] == j["test_accuracy"]);
  const auto last = h.back()["test_loss"].get<double>();
  BOOST_TEST(ev["test_loss"].get<double>() < last);
}

BOOST_AUTO_TEST_CASE(fashion_mnist_softmax_reaches_0_83) {
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  auto j = run_json({example("fashion_mnist_softmax.toml")});
  BOOST_TEST_MESSAGE("softmax: " << j.dump());
  BOOST_TEST(j["test_accuracy"].get<double>() >= 0.83);
}

BOOST_AUTO_TEST_CASE(digest_same_for_reruns_and_partitions) {
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  const std::vector<std::string> base{example("fashion_mnist.toml"), "--set",
                                      "job.epochs=1"};
  std::string first;
  for (const char* p : {"model.partitions=2", "model.partitions=2",
                        "model.partitions=1", "model.partitions=4"}) {
    auto args = base;
    args.insert(args.end(), {"--set", p});
    auto d = run_json(args)["params_digest"].get<std::string>();
    if (first.empty())
      first = d;
    BOOST_TEST(d == first, p);
  }
  // Its arguments are checked before anything runs.
  auto help = run_program("fashion_mnist_graph", {"--help"});
  BOOST_TEST(help.code == 0);
  BOOST_TEST(help.out.rfind("usage: fashion_mnist_graph [EPOCHS", 0) == 0u,
             help.out);
  auto bad = run_program("fashion_mnist_graph", {"three"});
  BOOST_TEST(bad.code == 2);
  BOOST_TEST(bad.err.rfind("fashion_mnist_graph: EPOCHS: \"three\" is not a "
                           "whole number >= 1",
                           0) == 0u,
             bad.err);
  // The C++ graph API builds the same graph: same digest.
  auto g = run_program("fashion_mnist_graph", {"1"}, 300);
  BOOST_REQUIRE_EQUAL(g.code, 0);
  BOOST_TEST(g.out.find("params_digest " + first) != std::string::npos, g.out);
  // ... also when it starts its own two node processes; and what it saves
  // is that model.
  temp_dir dir;
  const auto model = dir.file("graph.onnx");
  auto g2 = run_program("fashion_mnist_graph", {"1", "2", model}, 300);
  BOOST_REQUIRE_EQUAL(g2.code, 0);
  BOOST_TEST(g2.out.find("params_digest " + first) != std::string::npos,
             g2.out);
  auto in = run_troupe({"inspect", model, "--json"});
  BOOST_REQUIRE_EQUAL(in.code, 0);
  BOOST_TEST(json::parse(in.out)["params_digest"] == first);
  // A different seed trains differently.
  auto args = base;
  args.insert(args.end(), {"--set", "job.seed=43"});
  BOOST_TEST(run_json(args)["params_digest"].get<std::string>() != first);
}

BOOST_AUTO_TEST_CASE(digest_same_on_one_two_and_three_nodes) {
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  std::string first;
  for (const char* nodes : {"cluster.local_nodes=1", "cluster.local_nodes=2",
                            "cluster.local_nodes=3"}) {
    auto j = run_json({example("fashion_mnist.toml"), "--set", "job.epochs=1",
                       "--set", "cluster.workers=3", "--set", "data.shards=3",
                       "--set", "data.batch=63", "--set", "model.partitions=3",
                       "--set", nodes});
    BOOST_TEST_MESSAGE(nodes << ": " << j["params_digest"] << " "
                             << j["samples_per_s"]);
    if (first.empty())
      first = j["params_digest"];
    BOOST_TEST(j["params_digest"] == first, nodes);
  }
}

BOOST_AUTO_TEST_CASE(async_and_ssp_reach_0_85) {
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  for (const char* mode : {"job.mode=async", "job.mode=ssp"}) {
    auto j = run_json({example("fashion_mnist.toml"), "--set", mode, "--set",
                       "job.staleness=2"});
    BOOST_TEST_MESSAGE(mode << ": test_accuracy " << j["test_accuracy"]
                            << ", max_lead " << j["max_lead"]);
    BOOST_TEST(j["test_accuracy"].get<double>() >= 0.85,
               mode << ": " << j["test_accuracy"] << " (max_lead "
                    << j["max_lead"] << ", history " << j["history"].dump()
                    << ")");
    BOOST_TEST(j["gradients_pushed"] == 2 * j["steps"].get<int>());
    if (std::string(mode) == "job.mode=ssp")
      BOOST_TEST(j["max_lead"].get<int>() <= 2);
  }
}

BOOST_AUTO_TEST_CASE(csv_regression_beats_predicting_the_mean) {
  // y = 2 x0 - 3 x1 + 0.5 x2 + 1 + noise; a small MLP learns it.
  temp_dir dir;
  auto make = [](int rows, std::uint64_t seed, std::vector<double>* ys) {
    std::string out = "x0,x1,x2,y\n";
    for (int i = 0; i < rows; ++i) {
      double x[3];
      for (int j = 0; j < 3; ++j)
        x[j] =
            2.0 * troupe::devices::unit_float(seed, std::uint64_t(i * 4 + j)) -
            1.0;
      const double noise =
          0.05 *
          (troupe::devices::unit_float(seed, std::uint64_t(i * 4 + 3)) - 0.5);
      const double y = 2 * x[0] - 3 * x[1] + 0.5 * x[2] + 1 + noise;
      ys->push_back(y);
      out += fmt::format("{},{},{},{}\n", x[0], x[1], x[2], y);
    }
    return out;
  };
  std::vector<double> train_y, test_y;
  write_text(dir.file("train.csv"), make(4000, 11, &train_y));
  write_text(dir.file("test.csv"), make(1000, 12, &test_y));
  double mean = 0;
  for (double y : train_y)
    mean += y;
  mean /= static_cast<double>(train_y.size());
  for (const char* loss : {"mse", "huber"}) {
    write_text(dir.file("p.toml"),
               fmt::format(R"([job]
epochs = 5
[data]
format = "csv"
train = "{}"
test = "{}"
target = "y"
classes = 0
batch = 32
[model]
layers = [ {{ type = "dense", units = 32 }}, {{ type = "tanh" }}, {{ type = "dense", units = 1 }} ]
loss = "{}"
partitions = 2
[optimizer]
type = "adam"
lr = 0.01
)",
                           dir.file("train.csv"), dir.file("test.csv"), loss));
    const auto model = dir.file(std::string(loss) + ".onnx");
    auto j = run_json({dir.file("p.toml"), "--save", model});
    double baseline = 0;
    for (double y : test_y) {
      const double r = std::fabs(y - mean);
      baseline +=
          std::string(loss) == "mse" ? r * r : (r <= 1 ? 0.5 * r * r : r - 0.5);
    }
    baseline /= static_cast<double>(test_y.size());
    const double got = j["test_loss"].get<double>();
    BOOST_TEST_MESSAGE(loss << ": test_loss " << got << ", mean predictor "
                            << baseline);
    BOOST_TEST(j["test_accuracy"].is_null());
    BOOST_TEST(got < 0.05 * baseline, loss);
    // Regression metrics: R^2 near 1, MAE <= RMSE, and for mse (whose
    // per-sample loss is the squared error) RMSE^2 is the test loss.
    const auto& m = j["test_metrics"];
    BOOST_TEST_MESSAGE(loss << ": test_metrics " << m.dump());
    BOOST_TEST(m["r2"].get<double>() > 0.95);
    BOOST_TEST(m["mae"].get<double>() <= m["rmse"].get<double>());
    if (std::string(loss) == "mse")
      BOOST_TEST(std::pow(m["rmse"].get<double>(), 2) == got,
                 boost::test_tools::tolerance(1e-6));
    // The saved model evaluates to the same figures.
    auto e = run_troupe({"eval", model, dir.file("p.toml"), "--json"});
    BOOST_TEST_INFO("stderr: " << e.err);
    BOOST_REQUIRE_EQUAL(e.code, 0);
    const auto ev = json::parse(e.out);
    BOOST_TEST(ev["test_loss"].get<double>() == got,
               boost::test_tools::tolerance(1e-9));
    BOOST_TEST(ev["test_metrics"] == m);
  }
}

BOOST_AUTO_TEST_SUITE_END()

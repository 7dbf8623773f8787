// Whole training runs (Release build only): accuracy of the examples,
// digests that do not depend on partitioning, CSV regression.
#include "tests/program.hpp"

#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

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

} // namespace

BOOST_AUTO_TEST_SUITE(training)

BOOST_AUTO_TEST_CASE(fashion_mnist_mlp_reaches_0_855) {
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  auto j = run_json({example("fashion_mnist.toml")});
  BOOST_TEST_MESSAGE("mlp: " << j.dump());
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
  // examples/fashion_mnist_cnn.toml as it is: 5 epochs, about a minute on
  // two cores.
  BOOST_REQUIRE_MESSAGE(have_fashion(),
                        "dataset-fashion-mnist is not installed");
  auto j = run_json({example("fashion_mnist_cnn.toml")});
  BOOST_TEST_MESSAGE("cnn: " << j.dump());
  BOOST_TEST(j["param_count"] == 421642);
  BOOST_TEST(j["test_accuracy"].get<double>() >= 0.90);
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
  // The C++ graph API builds the same graph: same digest.
  auto g = run_program("fashion_mnist_graph", {"1"}, 300);
  BOOST_REQUIRE_EQUAL(g.code, 0);
  BOOST_TEST(g.out.find("params_digest " + first) != std::string::npos, g.out);
  // ... also when it starts its own two node processes.
  auto g2 = run_program("fashion_mnist_graph", {"1", "2"}, 300);
  BOOST_REQUIRE_EQUAL(g2.code, 0);
  BOOST_TEST(g2.out.find("params_digest " + first) != std::string::npos,
             g2.out);
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
    auto j = run_json({dir.file("p.toml")});
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
  }
}

BOOST_AUTO_TEST_SUITE_END()

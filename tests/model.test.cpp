// Trained models through the CLI: run --save, eval, predict, inspect, on a
// tiny data set, and bad model files refused with exit 2.
#include "tests/program.hpp"

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>

using namespace troupe::testing;
using troupe::data::testing::idx_bytes;
using troupe::data::testing::temp_dir;
using troupe::data::testing::write_gz;
using troupe::data::testing::write_text;

namespace {

// 40 images of 1x4x4 whose class (0..2) shows in their brightness, as
// train and test files.
struct small_idx {
  temp_dir dir;
  std::string images = dir.file("img.gz");
  std::string labels = dir.file("lbl.gz");
  small_idx() {
    std::vector<std::uint8_t> px, lb;
    for (int i = 0; i < 40; ++i) {
      const int c = i % 3;
      for (int j = 0; j < 16; ++j)
        px.push_back(static_cast<std::uint8_t>(c * 80 + (i * 7 + j * 13) % 60));
      lb.push_back(static_cast<std::uint8_t>(c));
    }
    write_gz(images, idx_bytes({40, 4, 4}, px));
    write_gz(labels, idx_bytes({40}, lb));
  }
  std::string pipeline(const std::string& layers) const {
    auto path = dir.file("p.toml");
    write_text(path, fmt::format(R"([job]
epochs = 3
[data]
train = ["{0}", "{1}"]
test = ["{0}", "{1}"]
batch = 8
[model]
layers = {2}
[optimizer]
type = "adam"
lr = 0.01
)",
                                 images, labels, layers));
    return path;
  }
};

const std::string cnn_layers =
    R"([{type="conv2d",channels=3,kernel=3,padding=1},{type="batch_norm"},)"
    R"({type="relu"},{type="max_pool2d",kernel=2},{type="dropout",rate=0.2},)"
    R"({type="flatten"},{type="dense",units=6},{type="layer_norm"},)"
    R"({type="tanh"},{type="dense",units=3}])";

nlohmann::json json_of(const outcome& o) {
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE_EQUAL(o.code, 0);
  return nlohmann::json::parse(o.out);
}

void expect_bad_input(const outcome& o, const std::string& needle) {
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err.find(needle) != std::string::npos);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto end = text.find('\n', at);
    if (end == std::string::npos)
      end = text.size();
    out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(model_files)

BOOST_AUTO_TEST_CASE(a_saved_model_evaluates_predicts_and_inspects_as_trained) {
  small_idx d;
  const auto pipe = d.pipeline(cnn_layers);
  const auto model = d.dir.file("m.onnx");
  const auto run =
      json_of(run_troupe({"run", pipe, "--json", "-q", "--save", model}));
  BOOST_REQUIRE(std::filesystem::exists(model));

  // eval: the run's figures, from the file.
  const auto ev = json_of(run_troupe({"eval", model, pipe, "--json"}));
  BOOST_TEST(ev["samples"] == 40);
  BOOST_TEST(ev["test_loss"].get<double>() == run["test_loss"].get<double>(),
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(ev["test_accuracy"].get<double>() ==
             run["test_accuracy"].get<double>());
  std::int64_t diagonal = 0, total = 0;
  // The metrics, as the run reported them.
  BOOST_TEST(ev["test_metrics"] == run["test_metrics"]);
  const auto rows = ev["test_metrics"]["confusion"];
  BOOST_REQUIRE_EQUAL(rows.size(), 3u);
  for (std::size_t t = 0; t < 3; ++t) {
    BOOST_REQUIRE_EQUAL(rows[t].size(), 3u);
    std::int64_t support = 0;
    for (std::size_t p = 0; p < 3; ++p) {
      total += rows[t][p].get<std::int64_t>();
      support += rows[t][p].get<std::int64_t>();
      diagonal += t == p ? rows[t][p].get<std::int64_t>() : 0;
    }
    const auto& c = ev["test_metrics"]["per_class"][t];
    BOOST_TEST(c["support"] == support);
    const double recall =
        rows[t][t].get<double>() / static_cast<double>(support);
    BOOST_TEST(c["recall"].get<double>() == recall,
               boost::test_tools::tolerance(1e-12));
  }
  BOOST_TEST(total == 40);
  BOOST_TEST(static_cast<double>(diagonal) / 40 ==
             run["test_accuracy"].get<double>());

  // predict: a row per sample whose classes give the same accuracy.
  const auto csv = d.dir.file("pred.csv");
  auto p = run_troupe({"predict", model, "--data", d.images, "--out", csv});
  BOOST_TEST_INFO(p.err);
  BOOST_REQUIRE_EQUAL(p.code, 0);
  const auto lines = lines_of(slurp(csv));
  BOOST_REQUIRE_EQUAL(lines.size(), 41u);
  BOOST_TEST(lines[0] == "class,p_0,p_1,p_2");
  int right = 0;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const int cls = std::stoi(lines[i].substr(0, lines[i].find(',')));
    right += cls == static_cast<int>((i - 1) % 3) ? 1 : 0;
    double sum = 0;
    std::size_t at = lines[i].find(',');
    while (at != std::string::npos) {
      sum += std::stod(lines[i].substr(at + 1));
      at = lines[i].find(',', at + 1);
    }
    BOOST_TEST(sum == 1.0, boost::test_tools::tolerance(1e-4));
  }
  BOOST_TEST(right / 40.0 == run["test_accuracy"].get<double>());

  // inspect: the format, the shapes and the digest check.
  const auto in = json_of(run_troupe({"inspect", model, "--json"}));
  BOOST_TEST(in["kind"] == "onnx");
  BOOST_TEST(in["opset"] == 17);
  BOOST_TEST(in["params_digest"] == run["params_digest"]);
  BOOST_TEST(in["checksum"].get<std::string>().rfind("ok", 0) == 0);
  BOOST_TEST(in["input"] == nlohmann::json::array({1, 4, 4}));
  BOOST_TEST(in["output"] == nlohmann::json::array({3}));
  BOOST_TEST(in["param_count"] == run["param_count"]);
  const auto ops = in["ops"].get<std::vector<std::string>>();
  BOOST_TEST(std::count(ops.begin(), ops.end(), "Dropout") == 0);

  // The ONNX library's checker and an evaluation outside troupe.
  if (std::system("/usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null") !=
      0) {
    BOOST_FAIL("python3-onnx is not installed (tools/dev installs it)");
  }
  auto ref = run_program_at(
      "/usr/bin/python3",
      {std::string(TROUPE_SOURCE_DIR) + "/tools/onnx_reference.py", model,
       "--idx", d.images, d.labels, "--compare", csv});
  const auto r = json_of(ref);
  BOOST_TEST(r["accuracy"].get<double>() == run["test_accuracy"].get<double>());
  BOOST_TEST(r["agree_with_predict"].get<double>() == 1.0);
}

BOOST_AUTO_TEST_CASE(bad_model_files_exit_2_naming_the_file) {
  small_idx d;
  const auto pipe = d.pipeline(cnn_layers);
  const auto model = d.dir.file("m.onnx");
  json_of(run_troupe({"run", pipe, "--json", "-q", "--save", model}));
  const auto bytes = slurp(model);

  const auto cut = d.dir.file("cut.onnx");
  write_text(cut, bytes.substr(0, bytes.size() / 2));
  for (const char* cmd : {"eval", "inspect"}) {
    auto o = std::string(cmd) == "eval" ? run_troupe({cmd, cut, pipe})
                                        : run_troupe({cmd, cut});
    expect_bad_input(o, cut + ": not an ONNX model");
  }
  const auto text = d.dir.file("text.onnx");
  write_text(text, "this is not a model\n");
  expect_bad_input(run_troupe({"predict", text, "--data", d.images}),
                   text + ": not an ONNX model");
  expect_bad_input(run_troupe({"eval", d.dir.file("none.onnx"), pipe}),
                   "none.onnx: cannot read");

  // An op troupe cannot run (the file edited with the ONNX library).
  const auto elu = d.dir.file("elu.onnx");
  auto edit = run_program_at(
      "/usr/bin/python3",
      {"-c",
       "import onnx, sys\n"
       "m = onnx.load(sys.argv[1])\n"
       "n = [x for x in m.graph.node if x.op_type == 'Relu'][0]\n"
       "n.op_type = 'Elu'\n"
       "onnx.checker.check_model(m)\n"
       "onnx.save(m, sys.argv[2])\n",
       model, elu});
  BOOST_TEST_INFO("python: " << edit.err);
  BOOST_REQUIRE_EQUAL(edit.code, 0);
  expect_bad_input(run_troupe({"eval", elu, pipe}),
                   "op Elu is not one troupe can run");
  expect_bad_input(run_troupe({"predict", elu, "--data", d.images}),
                   elu + ": node");

  // A model whose input does not match the data.
  temp_dir other;
  const auto wide = other.file("wide.gz");
  write_gz(wide, idx_bytes({40, 5, 5}, std::vector<std::uint8_t>(1000, 7)));
  write_gz(other.file("l.gz"),
           idx_bytes({40}, std::vector<std::uint8_t>(40, 1)));
  expect_bad_input(run_troupe({"eval", model, pipe, "--set",
                               fmt::format("data.test=[\"{}\", \"{}\"]", wide,
                                           other.file("l.gz"))}),
                   "the model's input is [1, 4, 4] (16 values per sample) but");
  expect_bad_input(run_troupe({"predict", model, "--data", wide}),
                   "the model's input is [1, 4, 4]");

  // No data.test to evaluate on; --save where no directory is.
  expect_bad_input(run_troupe({"eval", model, pipe, "--set", "data.test=[]"}),
                   "data.test is not set");
  auto o = run_troupe(
      {"run", pipe, "-q", "--save", d.dir.file("no/such/dir/m.onnx")});
  expect_bad_input(o, "no directory");
  BOOST_TEST(o.out.empty()); // refused before training
}

BOOST_AUTO_TEST_CASE(a_finished_run_checkpoints_its_last_step) {
  // 40 samples at batch 8: 5 steps an epoch, 15 in all, snapshots every
  // 4: without the final checkpoint the newest would be step 12.
  small_idx d;
  const auto pipe = d.pipeline(cnn_layers);
  const auto ck = d.dir.file("ck");
  const auto run =
      json_of(run_troupe({"run", pipe, "--json", "-q", "--checkpoint-dir", ck,
                          "--set", "supervision.snapshot_every=4"}));
  BOOST_REQUIRE_EQUAL(run["steps"], 15);
  const auto last = ck + "/param_shard-0-v000000000015.snap";
  BOOST_REQUIRE(std::filesystem::exists(last));
  const auto in = json_of(run_troupe({"inspect", last, "--json"}));
  BOOST_TEST(in["kind"] == "snapshot");
  BOOST_TEST(in["version"] == 15);
  BOOST_TEST(in["format_version"] == 1);
  BOOST_TEST(in["checksum"].get<std::string>().rfind("ok", 0) == 0);
  BOOST_TEST(in["elements"] == run["param_count"]);
  BOOST_TEST(in["optimizer_tensors"] == 2); // adam's two moments

  // Resuming the finished run trains nothing and gives its parameters; the
  // saved model is the run's.
  const auto model = d.dir.file("resumed.onnx");
  auto o =
      run_troupe({"run", pipe, "--json", "--checkpoint-dir", ck, "--resume",
                  "--save", model, "--set", "supervision.snapshot_every=4"});
  const auto again = json_of(o);
  BOOST_TEST(again["params_digest"] == run["params_digest"]);
  BOOST_TEST(again["resumed_from"] == 15);
  BOOST_TEST(o.err.find("nothing left to train") != std::string::npos);
  const auto ev = json_of(run_troupe({"eval", model, pipe, "--json"}));
  BOOST_TEST(ev["test_accuracy"] == run["test_accuracy"]);

  // A corrupt snapshot is named by inspect.
  auto bytes = slurp(last);
  bytes[bytes.size() - 3] = static_cast<char>(bytes[bytes.size() - 3] ^ 1);
  const auto bad = d.dir.file("bad.snap");
  write_text(bad, bytes);
  expect_bad_input(run_troupe({"inspect", bad}), bad + ": checksum mismatch");
}

BOOST_AUTO_TEST_CASE(
    snapshots_that_cannot_be_written_warn_and_training_goes_on) {
  // A file-size limit of 2 KiB on the driver, where the snapshot store
  // writes: every snapshot write fails as on a full disk. The job still
  // ends with the digest of a run without checkpoints.
  small_idx d;
  const auto pipe = d.pipeline(cnn_layers);
  const auto clean = json_of(run_troupe({"run", pipe, "--json", "-q"}));
  const auto ck = d.dir.file("ck");
  const auto out = d.dir.file("out.json");
  auto o = run_program_at(
      "/bin/sh",
      {"-c",
       fmt::format("(ulimit -f 2; exec {}/bin/troupe run {} --json "
                   "--checkpoint-dir {} --set "
                   "supervision.snapshot_every=4) | cat > {}",
                   TROUPE_BINARY_DIR, quote(pipe), quote(ck), quote(out))});
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE_EQUAL(o.code, 0);
  const auto j = nlohmann::json::parse(slurp(out));
  BOOST_TEST(j["params_digest"] == clean["params_digest"]);
  BOOST_TEST(o.err.find("warning: param_shard:0's snapshot of step 4 was not "
                        "written: " +
                        ck) != std::string::npos);
  BOOST_TEST(o.err.find("File too large") != std::string::npos);
  BOOST_TEST(o.err.find("the final checkpoint was not written") !=
             std::string::npos);
  // Said once, not once per snapshot.
  BOOST_TEST(o.err.find("warning:", o.err.find("warning:") + 1) ==
             std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

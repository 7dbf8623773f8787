// Bad input through the CLI: exit code 2 and a message naming the file or
// key and what is wrong; never a crash or a hang. These also run in the
// sanitizer build.
#include "tests/program.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>

#include <filesystem>
#include <nlohmann/json.hpp>

using namespace troupe::testing;
using troupe::data::testing::idx_bytes;
using troupe::data::testing::temp_dir;
using troupe::data::testing::write_gz;
using troupe::data::testing::write_plain;
using troupe::data::testing::write_text;

namespace {

// A tiny IDX data set (8 images of 2x2, labels 0..1) in dir.
struct tiny_idx {
  temp_dir dir;
  std::string images = dir.file("img.gz");
  std::string labels = dir.file("lbl.gz");
  tiny_idx() {
    std::vector<std::uint8_t> px, lb;
    for (int i = 0; i < 8; ++i) {
      for (int j = 0; j < 4; ++j)
        px.push_back(static_cast<std::uint8_t>((i * 37 + j * 11) % 256));
      lb.push_back(static_cast<std::uint8_t>(i % 2));
    }
    write_gz(images, idx_bytes({8, 2, 2}, px));
    write_gz(labels, idx_bytes({8}, lb));
  }
  std::string pipeline(const std::string& extra = "") const {
    auto path = dir.file("p.toml");
    write_text(path, fmt::format(R"([job]
epochs = 1
[data]
train = ["{}", "{}"]
batch = 4
[model]
layers = [ {{ type = "dense", units = 2 }} ]
{})",
                                 images, labels, extra));
    return path;
  }
};

void expect_bad_input(const outcome& o, const std::string& needle) {
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err.find(needle) != std::string::npos);
  BOOST_TEST(o.out.empty());
}

} // namespace

BOOST_AUTO_TEST_SUITE(cli)

BOOST_AUTO_TEST_CASE(tiny_job_runs_and_prints_json) {
  tiny_idx d;
  auto o = run_troupe({"run", d.pipeline(), "--json", "-q"});
  BOOST_TEST_INFO(o.err);
  BOOST_REQUIRE(o.code == 0);
  auto j = nlohmann::json::parse(o.out);
  for (const char* key :
       {"job", "mode", "nodes", "workers", "epochs", "steps", "samples_per_s",
        "wall_s", "test_loss", "test_accuracy", "params_digest", "restarts",
        "placement"})
    BOOST_TEST(j.contains(key), key);
  BOOST_TEST(j["steps"] == 2);
  BOOST_TEST(j["test_loss"].is_null()); // no data.test
  BOOST_TEST(j["params_digest"].get<std::string>().size() == 64u);
  BOOST_TEST(j["placement"]["param_shard:0"] == "local");
}

// The metrics file: one time base, the resolved pipeline at the start,
// faults as they happen; and plain progress lines when stderr is a file.
BOOST_AUTO_TEST_CASE(metrics_record_the_pipeline_and_faults_as_they_happen) {
  tiny_idx d;
  auto metrics = d.dir.file("m.jsonl");
  auto o = run_troupe({"run", d.pipeline(), "--metrics", metrics, "--set",
                       "job.epochs=3", "--set",
                       R"(chaos=[{kill="worker:0",at_step=3}])",
                       "--progress-every", "0.001"});
  BOOST_TEST_INFO(o.err);
  BOOST_REQUIRE(o.code == 0);
  std::vector<nlohmann::json> lines;
  std::istringstream in(slurp(metrics));
  for (std::string line; std::getline(in, line);)
    lines.push_back(nlohmann::json::parse(line));
  BOOST_REQUIRE(lines.size() >= 4u);
  const auto& start = lines.front();
  BOOST_TEST(start["event"] == "start");
  BOOST_TEST(start["t"] == 0.0);
  BOOST_TEST(start["sets"].size() == 2u);
  // After --set, with the defaults the job used.
  BOOST_TEST(start["config"]["job"]["epochs"] == 3);
  BOOST_TEST(start["config"]["data"]["batch"] == 4);
  BOOST_TEST(start["config"]["optimizer"]["lr"] == 0.001);
  BOOST_TEST(start["config"]["supervision"]["strategy"] == "one_for_one");
  std::vector<std::string> kinds;
  double t = 0;
  for (const auto& j : lines) {
    BOOST_TEST(j["t"].get<double>() >= t, j.dump()); // one clock, forward
    t = j["t"].get<double>();
    kinds.push_back(j["event"]);
    if (j["event"] == "progress") {
      BOOST_TEST(j["step"].get<int>() >= 1, j.dump());
      BOOST_TEST(j["lr"] == 0.001); // as given, not as a float widened
    }
  }
  auto at = [&](const std::string& kind) {
    return std::find(kinds.begin(), kinds.end(), kind) - kinds.begin();
  };
  const auto n = static_cast<long>(kinds.size());
  BOOST_TEST(at("fault") < n, fmt::format("{}", fmt::join(kinds, " ")));
  BOOST_TEST(at("fault") < at("failed"));
  BOOST_TEST(at("failed") < at("recovered"));
  BOOST_TEST(at("recovered") < at("end"));
  const auto& fault = lines[static_cast<std::size_t>(at("fault"))];
  BOOST_TEST(fault["actor"] == "worker:0");
  BOOST_TEST(fault["message"] ==
             "fault injected: [[chaos]] kill worker:0 at step 3");
  const auto& rec = lines[static_cast<std::size_t>(at("recovered"))];
  BOOST_TEST(rec["ms"].get<double>() > 0);
  BOOST_TEST(lines.back()["event"] == "end");
  BOOST_TEST(lines.back()["restarts"] == 1);
  // Plain progress lines: stderr is a file here.
  BOOST_TEST(o.err.find("troupe: epoch 3/3  step 6/6  loss ") !=
                 std::string::npos,
             o.err);
  BOOST_TEST(o.err.find("\r") == std::string::npos); // no bar
  BOOST_TEST(o.err.find("troupe: worker:0 on node local failed") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(plot_draws_the_runs_of_metrics_files) {
  tiny_idx d;
  auto metrics = d.dir.file("m.jsonl");
  for (int i = 0; i < 2; ++i)
    BOOST_REQUIRE(run_troupe({"run", d.pipeline(), "--metrics", metrics, "-q",
                              "--set", "job.epochs=2"})
                      .code == 0);
  auto svg = d.dir.file("p.svg");
  auto o = run_troupe({"plot", metrics, "-o", svg});
  BOOST_TEST_INFO(o.err);
  BOOST_REQUIRE(o.code == 0);
  BOOST_TEST(o.err.find("2 run(s) plotted to") != std::string::npos);
  const auto text = slurp(svg);
  BOOST_TEST(text.find("job (m.jsonl) #2") != std::string::npos);
  BOOST_TEST(text.find("data-run=\"1\"") != std::string::npos);
  auto png = d.dir.file("p.png");
  BOOST_TEST(run_troupe({"plot", metrics, "-o", png, "--x", "time"}).code == 0);
  BOOST_TEST(slurp(png).rfind("\x89PNG", 0) == 0u);
  expect_bad_input(run_troupe({"plot", metrics, "-o", d.dir.file("p.pdf")}),
                   "-o " + d.dir.file("p.pdf") +
                       ": the plot is written as .svg or .png");
  write_text(d.dir.file("bad.jsonl"), "{}\noops\n{}\n");
  expect_bad_input(run_troupe({"plot", d.dir.file("bad.jsonl"), "-o", svg}),
                   "bad.jsonl:2: not a JSON line");
  expect_bad_input(run_troupe({"plot", d.dir.file("none.jsonl"), "-o", svg}),
                   "none.jsonl: cannot open");
  // The earlier figure is still whole.
  BOOST_TEST(slurp(svg) == text);
}

BOOST_AUTO_TEST_CASE(devices_lists_backends_and_a_gpu_job_needs_a_gpu) {
  auto o = run_troupe({"devices", "--json"});
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE(o.code == 0);
  const auto j = nlohmann::json::parse(o.out);
  const auto backends = j["backends"].get<std::vector<std::string>>();
  BOOST_TEST(backends.front() == "cpu");
  BOOST_TEST(j["devices"][0]["id"] == "cpu");
  std::size_t gpus = 0;
  for (const auto& d : j["devices"])
    gpus += d["kind"] == "cuda" ? 1 : 0;
  tiny_idx data;
  auto run = run_troupe({"run", data.pipeline(), "--set",
                         "cluster.device=\"cuda\"", "--json", "-q"});
  if (backends.size() == 1) {
    expect_bad_input(run, "needs the CUDA backend");
  } else if (gpus == 0) {
    // A CUDA build on a machine without a GPU: GPU workers have nowhere to
    // go, and the message says what the nodes offer.
    BOOST_TEST(j.contains("cuda_note"));
    expect_bad_input(run, "cluster.device: no node has a \"cuda\" device "
                          "(nodes offer local: cpu)");
  } else {
    BOOST_TEST_INFO("stderr: " << run.err);
    BOOST_TEST(run.code == 0);
  }
  auto node = run_troupe({"node", "--devices", "cuda:7"});
  BOOST_TEST(node.code == 2);
  BOOST_TEST(node.err.find("--devices cuda:7: ") != std::string::npos,
             node.err);
}

BOOST_AUTO_TEST_CASE(truncated_gz) {
  tiny_idx d;
  auto size = std::filesystem::file_size(d.images);
  std::filesystem::resize_file(d.images, size - 10);
  expect_bad_input(run_troupe({"run", d.pipeline()}), "img.gz: truncated");
}

BOOST_AUTO_TEST_CASE(wrong_idx_magic) {
  tiny_idx d;
  write_plain(d.images, {0, 0, 9, 3, 0, 0, 0, 1});
  expect_bad_input(run_troupe({"run", d.pipeline()}),
                   "img.gz: not an IDX file");
}

BOOST_AUTO_TEST_CASE(label_count_differs_from_image_count) {
  tiny_idx d;
  write_gz(d.labels, idx_bytes({7}, {0, 1, 0, 1, 0, 1, 0}));
  expect_bad_input(run_troupe({"run", d.pipeline()}),
                   "lbl.gz has 7 labels but");
}

BOOST_AUTO_TEST_CASE(missing_data_file) {
  tiny_idx d;
  std::filesystem::remove(d.labels);
  expect_bad_input(run_troupe({"run", d.pipeline()}),
                   "lbl.gz: cannot open: No such file or directory");
}

BOOST_AUTO_TEST_CASE(csv_with_a_non_numeric_cell) {
  temp_dir dir;
  write_text(dir.file("d.csv"), "x,y\n1,2\n3,oops\n");
  write_text(dir.file("p.toml"), fmt::format(R"([data]
format = "csv"
train = "{}"
batch = 1
[model]
layers = [ {{ type = "dense", units = 1 }} ]
loss = "mse"
)",
                                             dir.file("d.csv")));
  expect_bad_input(run_troupe({"run", dir.file("p.toml")}),
                   "d.csv:3:3: target \"oops\" is not a finite number (a "
                   "regression target must be");
}

BOOST_AUTO_TEST_CASE(malformed_toml) {
  temp_dir dir;
  write_text(dir.file("p.toml"), "[job]\nepochs = = 3\n");
  expect_bad_input(run_troupe({"run", dir.file("p.toml")}),
                   "p.toml:2:10: Error while parsing value: could not "
                   "determine value type");
}

BOOST_AUTO_TEST_CASE(unknown_layer_type) {
  tiny_idx d;
  expect_bad_input(run_troupe({"run", d.pipeline(), "--set",
                               "model.layers=[{type=\"conv\"}]"}),
                   "model.layers[0].type: unknown layer type \"conv\"");
}

BOOST_AUTO_TEST_CASE(layers_that_do_not_fit_name_the_layer_and_cause) {
  // The tiny images are [1, 2, 2].
  tiny_idx d;
  auto with_layers = [&](const std::string& layers,
                         std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"run", d.pipeline(), "--set",
                                  "model.layers=" + layers};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_troupe(args);
  };
  const std::string tail = R"(,{type="flatten"},{type="dense",units=2}])";
  expect_bad_input(
      with_layers(R"([{type="conv2d",channels=4,kernel=3})" + tail),
      "model.layers[0] (conv2d): its 3x3 kernel is larger than its input "
      "[1, 2, 2] padded by 0 (data.shape [1, 2, 2])");
  expect_bad_input(
      with_layers(R"([{type="conv2d",channels=4,kernel=1,in_channels=3})" +
                  tail),
      "model.layers[0] (conv2d): in_channels = 3 but its input [1, 2, 2] "
      "has 1 channel(s)");
  expect_bad_input(
      with_layers(
          R"([{type="max_pool2d",kernel=2},{type="max_pool2d",kernel=2})" +
          tail),
      "model.layers[1] (max_pool2d): its 2x2 kernel is larger than its input "
      "[1, 1, 1] padded by 0");
  expect_bad_input(
      with_layers(R"([{type="dropout",rate=1.0},{type="dense",units=2}])"),
      "model.layers[0].rate: a dropout rate must be in [0, 1), got 1");
  expect_bad_input(with_layers(R"([{type="conv2d",channels=4,kernel=1})" + tail,
                               {"--set", "data.shape=[3, 2, 2]"}),
                   "data.shape: [3, 2, 2] holds 12 values but each sample of");
  expect_bad_input(
      with_layers(R"([{type="conv2d",channels=4,kernel=1,stride=0})" + tail),
      "model.layers[0].stride: 0 is out of range");
}

BOOST_AUTO_TEST_CASE(a_job_that_cannot_fit_is_refused_with_the_figures) {
  // Valid keys, sizes no machine of today holds: refused before anything
  // is allocated for them, within seconds, naming the estimate.
  tiny_idx d;
  const auto t0 = std::chrono::steady_clock::now();
  auto wide = run_troupe(
      {"run", d.pipeline(), "--set",
       R"(model.layers=[{type="flatten"},{type="dense",units=16777216},{type="dense",units=16777216}])"});
  expect_bad_input(wide, "the job cannot fit: this machine would need about");
  BOOST_TEST(wide.err.find("(model: 281475077373952 parameters") !=
                 std::string::npos,
             wide.err);
  auto many = run_troupe(
      {"run", d.pipeline(), "--set", "cluster.workers=8", "--set",
       "data.batch=8", "--set",
       R"(model.layers=[{type="flatten"},{type="dense",units=16777216},{type="dense",units=16777216}])"});
  expect_bad_input(many, "8 worker(s) x ");
  BOOST_TEST(
      (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)));
}

BOOST_AUTO_TEST_CASE(bad_early_stopping_and_schedules) {
  tiny_idx d;
  expect_bad_input(run_troupe({"run", d.pipeline("[optimizer]\nlr = 0.1\n"),
                               "--set", "job.patience=0"}),
                   "job.patience: 0 is out of range");
  expect_bad_input(run_troupe({"run", d.pipeline(), "--set", "job.patience=2"}),
                   "job.patience: early stopping watches the test set");
  expect_bad_input(
      run_troupe({"run", d.pipeline(), "--set", "job.monitor=test_accuracy"}),
      "job.monitor: only used with job.patience");
  expect_bad_input(
      run_troupe({"run", d.pipeline(), "--set",
                  "optimizer.schedule={type=\"cosine\",gamma=0.5}"}),
      "optimizer.schedule.gamma: only used with type = \"step\"");
  expect_bad_input(
      run_troupe({"run", d.pipeline(), "--set",
                  "optimizer.schedule={type=\"step\",step_size=2,decay=3}"}),
      "optimizer.schedule.decay");
}

BOOST_AUTO_TEST_CASE(negative_learning_rate) {
  tiny_idx d;
  auto path = d.pipeline("[optimizer]\nlr = -0.5\n");
  expect_bad_input(run_troupe({"run", path}),
                   "p.toml:9:6: optimizer.lr: -0.5 is out of range");
}

BOOST_AUTO_TEST_CASE(unknown_key_and_bad_override) {
  tiny_idx d;
  expect_bad_input(run_troupe({"run", d.pipeline("[optimizer]\nrate = 1\n")}),
                   "optimizer.rate: unknown key; [optimizer] takes: beta1, "
                   "beta2, clip_norm, eps, lr, momentum, type, weight_decay");
  expect_bad_input(run_troupe({"run", d.pipeline(), "--set", "job.epochs"}),
                   "expected KEY=VALUE");
  expect_bad_input(run_troupe({"run", d.pipeline(), "--set", "data.shards=2"}),
                   "data.shards = 2 exceeds cluster.workers = 1");
}

BOOST_AUTO_TEST_CASE(missing_pipeline_and_bad_flags) {
  expect_bad_input(run_troupe({"run", "/nonexistent/pipe.toml"}),
                   "troupe: /nonexistent/pipe.toml: cannot open: No such file "
                   "or directory");
  expect_bad_input(run_troupe({"run", "x.toml", "--no-such-flag"}),
                   "The following argument was not expected: --no-such-flag");
  expect_bad_input(run_troupe({"frobnicate"}),
                   "troupe: unknown command 'frobnicate' (commands: run, ");
  auto help = run_troupe({"run", "--help"});
  BOOST_TEST(help.code == 0);
  BOOST_TEST(help.out.find("--set") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(model_does_not_fit_the_data) {
  tiny_idx d;
  expect_bad_input(run_troupe({"run", d.pipeline(), "--set", "model.loss=mse"}),
                   "1 target value(s) per sample");
}

BOOST_AUTO_TEST_CASE(metrics_are_appended_not_clobbered) {
  tiny_idx d;
  auto metrics = d.dir.file("m.jsonl");
  write_text(metrics, "{\"earlier\":1}\n");
  auto o = run_troupe({"run", d.pipeline(), "--metrics", metrics, "-q"});
  BOOST_REQUIRE(o.code == 0);
  auto text = slurp(metrics);
  BOOST_TEST(text.rfind("{\"earlier\":1}\n", 0) == 0u);
  BOOST_TEST(text.find("\"event\":\"epoch\"") != std::string::npos);
  BOOST_TEST(text.find("\"event\":\"end\"") != std::string::npos);
  expect_bad_input(
      run_troupe({"run", d.pipeline(), "--metrics", "/nonexistent/m.jsonl"}),
      "--metrics /nonexistent/m.jsonl: cannot open");
}

BOOST_AUTO_TEST_SUITE_END()

// Custom stages on node processes: the example plugin's data stage
// (random_crop_flip) and controller (plateau), examples/stages/, loaded with
// --plugin by the driver and the local nodes it starts.
#include "tests/jobs.hpp"

#include <set>

using namespace troupe::testing;

namespace {

const std::string plugin = TROUPE_BINARY_DIR "/lib/libtroupe_example_stages.so";

// The CSV job's 4 features seen as a 1x2x2 image, shifted by up to a pixel
// and mirrored.
const std::string crop = R"([[stage]]
type = "random_crop_flip"
pad = 1
flip = true
)";

std::vector<std::string> with_plugin(const csv_job& job,
                                     std::vector<std::string> more = {}) {
  std::vector<std::string> a{"--plugin", plugin, job.pipeline, "--set",
                             "data.shape=[1, 2, 2]"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// A job with [[chaos]] kills (one of a node) on 3 node processes, 3 epochs,
// snapshots every 10 steps: its result, checked to lose one node and end
// with the digest of the same job without the kills.
json killed_on_three_nodes(const csv_job& killed) {
  const auto args = with_plugin(killed, {"--set", "cluster.local_nodes=3",
                                         "--set", "job.epochs=3", "--set",
                                         "supervision.snapshot_every=10"});
  const auto reference = fault_free(args);
  auto j = run_json(args);
  BOOST_TEST(j["lost_nodes"].size() == 1u);
  BOOST_TEST(j["params_digest"].get<std::string>() ==
             reference["params_digest"].get<std::string>());
  return j;
}

std::vector<json> lines_of(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);)
    out.push_back(json::parse(line));
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(stages)

BOOST_AUTO_TEST_CASE(a_data_stage_keeps_the_digest_on_any_nodes_and_its_kill) {
  csv_job job(crop);
  std::string digest;
  for (int nodes : {1, 2, 3}) {
    auto j = run_json(with_plugin(
        job, {"--set", fmt::format("cluster.local_nodes={}", nodes)}));
    // One stage actor per data shard, each with its shard.
    for (int s = 0; s < 3; ++s)
      BOOST_TEST(j["placement"][fmt::format("stage:{}", s)] ==
                     j["placement"][fmt::format("data_shard:{}", s)],
                 nodes << " node(s), stage " << s);
    if (digest.empty())
      digest = j["params_digest"];
    BOOST_TEST(j["params_digest"].get<std::string>() == digest,
               nodes << " node(s)");
  }
  // The stage does change what the workers train on.
  auto plain = run_json(with_plugin(job, {"--set", "stage=[]"}));
  BOOST_TEST(plain["params_digest"].get<std::string>() != digest);
  // Kills of two stages, of a data shard behind one, and of a node (a
  // rollback: every actor spawned again) on 3 nodes: the workers get every
  // batch once, transformed as before.
  csv_job killed(crop + R"([[chaos]]
kill = "stage:1"
at_step = 30
[[chaos]]
kill = "data_shard:2"
at_step = 55
[[chaos]]
kill = "stage:2"
at_step = 80
[[chaos]]
kill = "node:node1"
at_step = 120
[testing]
slow_worker = 1
slow_ms = 3
)");
  auto j = killed_on_three_nodes(killed);
  BOOST_TEST(j["restarts_by_role"]["stage"].get<int>() >= 2,
             j["restarts_by_role"].dump());
  BOOST_TEST(j["restarts_by_role"]["data_shard"].get<int>() >= 1);
  // Where node1's stage went: a surviving node.
  BOOST_TEST(j["placement"]["stage:1"] != "node1");
}

BOOST_AUTO_TEST_CASE(a_stage_that_keeps_state_replays_its_epoch_after_kills) {
  // shuffle_buffer keeps each worker's batch before: what it sends depends
  // on the batches before. Kills in the middle of epochs
  // (of the stage, of a worker behind it, of a data shard in front, and a
  // node: a rollback) have it fed the epoch again from its first step.
  csv_job job(R"([[stage]]
type = "shuffle_buffer"
)");
  auto one = run_json(with_plugin(job));
  auto three = run_json(with_plugin(job, {"--set", "cluster.local_nodes=3"}));
  BOOST_TEST(one["params_digest"] == three["params_digest"]);
  auto plain = run_json(with_plugin(job, {"--set", "stage=[]"}));
  BOOST_TEST(plain["params_digest"] != one["params_digest"]);
  csv_job killed(R"([[stage]]
type = "shuffle_buffer"
[[chaos]]
kill = "stage:0"
at_step = 30
[[chaos]]
kill = "worker:1"
at_step = 75
[[chaos]]
kill = "data_shard:2"
at_step = 100
[[chaos]]
kill = "node:node2"
at_step = 150
[testing]
slow_worker = 2
slow_ms = 3
)");
  auto j = killed_on_three_nodes(killed);
  BOOST_TEST(j["restarts_by_role"]["stage"].get<int>() >= 1,
             j["restarts_by_role"].dump());
  BOOST_TEST(j["restarts_by_role"]["worker"].get<int>() >= 1);
}

BOOST_AUTO_TEST_CASE(a_controller_lowers_the_lr_and_stops_the_job) {
  // Never better than epoch 1 by 10: the lr is halved after epochs 2 and 3
  // (from epochs 4 and 5) and the job stops after epoch 4.
  csv_job job(R"([controller]
type = "plateau"
monitor = "train_loss"
min_delta = 10
patience = 1
stop_patience = 3
)");
  const std::string metrics = job.dir.file("metrics.jsonl");
  auto j = run_json(
      with_plugin(job, {"--set", "job.epochs=6", "--set",
                        "cluster.local_nodes=3", "--metrics", metrics}));
  BOOST_TEST(j["stopped_early"] == true);
  BOOST_REQUIRE_EQUAL(j["history"].size(), 4u);
  std::vector<std::string> said;
  std::map<std::int64_t, double> lr_of_epoch;
  std::vector<std::pair<std::int64_t, double>> progress_lr;
  for (const auto& l : lines_of(metrics)) {
    if (l["event"] == "controller")
      said.push_back(l["message"]);
    if (l["event"] == "epoch")
      lr_of_epoch[l["epoch"]] = l["lr"];
    if (l["event"] == "progress")
      progress_lr.emplace_back(l["step"], l["lr"]);
  }
  BOOST_REQUIRE_EQUAL(said.size(), 3u);
  BOOST_TEST(said[0] == "controller plateau: lr x 0.5 after epoch 2 (lr 0.005 "
                        "from step 187, epoch 4): 1 epoch(s) without a lower "
                        "train_loss than epoch 1's");
  BOOST_TEST(said[1] == "controller plateau: lr x 0.5 after epoch 3 (lr 0.0025 "
                        "from step 249, epoch 5): 2 epoch(s) without a lower "
                        "train_loss than epoch 1's");
  BOOST_TEST(said[2] == "controller plateau: stop after epoch 4, keeping its "
                        "parameters: 3 epoch(s) without a lower train_loss "
                        "than epoch 1's");
  BOOST_TEST(lr_of_epoch[3] == 0.01);
  BOOST_TEST(lr_of_epoch[4] == 0.005);
  for (const auto& [step, lr] : progress_lr)
    BOOST_TEST(lr == (step <= 186   ? 0.01
                      : step <= 248 ? 0.005
                                    : 0.0025),
               "step " << step);
  // The result is epoch 4's parameters, bit for bit: a 4-epoch run with the
  // same decisions and no stop, in one process, ends with them.
  auto four = run_json(with_plugin(
      job, {"--set", "job.epochs=4", "--set", "controller.stop_patience=0"}));
  BOOST_TEST(four["stopped_early"] == false);
  BOOST_TEST(four["params_digest"].get<std::string>() ==
             j["params_digest"].get<std::string>());
  BOOST_TEST(four["history"][3]["lr"] == 0.005);
}

BOOST_AUTO_TEST_CASE(a_controller_keeps_the_best_epochs_and_stops_on_a_step) {
  // save_best: each epoch that lowered the test loss is kept as a model,
  // beside --save's file. The job runs on 3 node processes.
  csv_job job(R"([controller]
type = "plateau"
monitor = "test_loss"
patience = 100
save_best = true
)");
  const auto model = job.dir.file("model.onnx");
  const auto metrics = job.dir.file("metrics.jsonl");
  auto j = run_json(with_plugin(job, {"--set", "job.epochs=4", "--set",
                                      "cluster.local_nodes=3", "--save", model,
                                      "--metrics", metrics}));
  std::set<std::int64_t> better; // epochs with a lower test loss than before
  double best = 1e300;
  for (const auto& e : j["history"])
    if (e["test_loss"].get<double>() < best) {
      best = e["test_loss"];
      better.insert(e["epoch"].get<std::int64_t>());
    }
  BOOST_REQUIRE(!better.empty());
  std::set<std::int64_t> saved;
  std::map<std::int64_t, std::string> digest;
  std::size_t asked = 0;
  for (const auto& l : lines_of(metrics)) {
    if (l["event"] == "model_saved") {
      const auto e = l["epoch"].get<std::int64_t>();
      saved.insert(e);
      digest[e] = l["params_digest"];
      BOOST_TEST(l["path"] ==
                 job.dir.file(fmt::format("model.epoch-{}.onnx", e)));
    }
    if (l["event"] == "controller" && l["message"].get<std::string>().find(
                                          "keep epoch ") != std::string::npos)
      ++asked;
  }
  BOOST_TEST(saved == better);
  BOOST_TEST(asked == better.size());
  for (const auto e : better)
    BOOST_TEST(std::filesystem::exists(
                   job.dir.file(fmt::format("model.epoch-{}.onnx", e))),
               e);
  // The last one kept is that epoch's model: the same parameters as a run
  // of that many epochs (in one process), and, run by the NumPy reference
  // outside troupe, that epoch's accuracy.
  const auto last = *better.rbegin();
  auto shorter =
      run_json(with_plugin(job, {"--set", fmt::format("job.epochs={}", last)}));
  BOOST_TEST(digest[last] == shorter["params_digest"].get<std::string>());
  const auto test_csv = job.dir.file("test-with-header.csv");
  write_text(test_csv, "a,b,c,d,label\n" + slurp(job.dir.file("test.csv")));
  auto ref = run_program_at(
      "/usr/bin/python3",
      {std::string(TROUPE_SOURCE_DIR) + "/tools/onnx_reference.py",
       job.dir.file(fmt::format("model.epoch-{}.onnx", last)), "--csv",
       test_csv, "--target", "label"});
  BOOST_TEST_INFO("reference: " << ref.out << ref.err);
  BOOST_REQUIRE_EQUAL(ref.code, 0);
  BOOST_TEST(json::parse(ref.out)["accuracy"].get<double>() ==
             j["history"][last - 1]["test_accuracy"].get<double>());
  // A stop asked between epochs (max_loss, far below any loss): the job
  // stops after the epoch of that step, with its parameters. Without
  // --save, the checkpoints asked for are named, once.
  auto o = run_troupe({"run", "--plugin", plugin, job.pipeline, "--set",
                       "job.epochs=4", "--set", "controller.max_loss=1e-9",
                       "--json"});
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE_EQUAL(o.code, 0);
  auto stopped = json::parse(o.out);
  BOOST_TEST(stopped["stopped_early"] == true);
  BOOST_TEST(stopped["history"].size() == 1u);
  BOOST_TEST(o.err.find("controller plateau: stop after epoch 1, keeping its "
                        "parameters (asked at step ") != std::string::npos,
             o.err);
  BOOST_TEST(o.err.find(" above max_loss 0.000000)") != std::string::npos,
             o.err);
  BOOST_TEST(o.err.find("the controller asked to keep epoch 1's model: give "
                        "--save FILE.onnx to write it (to "
                        "FILE.epoch-1.onnx)") != std::string::npos,
             o.err);
  auto one = run_json(with_plugin(job, {"--set", "job.epochs=1"}));
  BOOST_TEST(stopped["params_digest"] == one["params_digest"]);
}

BOOST_AUTO_TEST_CASE(a_custom_layer_trains_on_any_nodes_and_saves_as_onnx) {
  // The plugin's prelu (one learned slope per feature, starting at 0.25)
  // in place of the relu.
  csv_job job;
  const std::string layers =
      R"(model.layers=[{type="dense",units=32},{type="prelu"},)"
      R"({type="dense",units=3}])";
  const auto model = job.dir.file("prelu.onnx");
  auto one = run_json(
      {"--plugin", plugin, job.pipeline, "--set", layers, "--save", model});
  BOOST_TEST(one["param_count"] == 4 * 32 + 32 + 32 + 32 * 3 + 3);
  BOOST_TEST(one["test_accuracy"].get<double>() > 0.9);
  auto three = run_json({"--plugin", plugin, job.pipeline, "--set", layers,
                         "--set", "cluster.local_nodes=3"});
  BOOST_TEST(three["params_digest"].get<std::string>() ==
             one["params_digest"].get<std::string>());
  // The ONNX file (PRelu), run by the NumPy reference outside troupe on
  // the test set (with a header row, which the reference reads).
  const auto test_csv = job.dir.file("test-with-header.csv");
  write_text(test_csv, "a,b,c,d,label\n" + slurp(job.dir.file("test.csv")));
  auto ref = run_program_at(
      "/usr/bin/python3",
      {std::string(TROUPE_SOURCE_DIR) + "/tools/onnx_reference.py", model,
       "--csv", test_csv, "--target", "label"});
  BOOST_TEST_INFO("reference: " << ref.out << ref.err);
  BOOST_REQUIRE_EQUAL(ref.code, 0);
  const auto r = json::parse(ref.out);
  BOOST_TEST(r["samples"] == 500);
  BOOST_TEST(r["accuracy"].get<double>() == one["test_accuracy"].get<double>());
  // Without the plugin the type is unknown, and where it would come from
  // is said.
  auto o = run_troupe({"run", job.pipeline, "--set", layers});
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err.find("unknown layer type \"prelu\"") != std::string::npos,
             o.err);
  BOOST_TEST(o.err.find("custom layers come from a plugin: --plugin LIB.so") !=
                 std::string::npos,
             o.err);
}

BOOST_AUTO_TEST_CASE(custom_metrics_are_reported_and_a_controller_judges_one) {
  // top_k twice: as top2, and with k = 3 of the 3 classes (always 1). The
  // controller watches top2, higher better, and never sees it improve by
  // 10: lr halved after epoch 2, stop after epoch 3.
  csv_job job(R"([[metric]]
type = "top_k"
name = "top2"
[[metric]]
type = "top_k"
k = 3
[controller]
type = "plateau"
monitor = "top2"
maximize = true
min_delta = 10
patience = 1
stop_patience = 2
)");
  const std::string metrics = job.dir.file("metrics.jsonl");
  auto o = run_troupe({"run", "--plugin", plugin, job.pipeline, "--set",
                       "job.epochs=5", "--set", "cluster.local_nodes=2",
                       "--metrics", metrics, "--json"});
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE_EQUAL(o.code, 0);
  const auto j = json::parse(o.out);
  BOOST_TEST(j["stopped_early"] == true);
  BOOST_REQUIRE_EQUAL(j["history"].size(), 3u);
  int epochs_seen = 0;
  for (const auto& l : lines_of(metrics)) {
    if (l["event"] != "epoch")
      continue;
    ++epochs_seen;
    const double top2 = l["metrics"]["top2"];
    BOOST_TEST(top2 >= l["test_accuracy"].get<double>());
    BOOST_TEST(top2 <= 1.0);
    BOOST_TEST(l["metrics"]["top_k"] == 1.0);
  }
  BOOST_TEST(epochs_seen == 3);
  BOOST_TEST(j["test_metrics"]["top_k"] == 1.0);
  BOOST_TEST(j["test_metrics"]["top2"].get<double>() >=
             j["test_accuracy"].get<double>());
  BOOST_TEST(o.err.find("  top2 ") != std::string::npos, o.err);
  BOOST_TEST(o.err.find("controller plateau: stop after epoch 3") !=
                 std::string::npos,
             o.err);
  // Metrics need test data, and their own names.
  auto e = run_troupe(
      {"run", "--plugin", plugin, job.pipeline, "--set", "data.test=[]"});
  BOOST_TEST(e.code == 2);
  BOOST_TEST(e.err.find("metric: needs data.test") != std::string::npos, e.err);
  csv_job clash("[[metric]]\ntype = \"top_k\"\nname = \"test_loss\"\n");
  e = run_troupe({"run", "--plugin", plugin, clash.pipeline});
  BOOST_TEST(e.code == 2);
  BOOST_TEST(e.err.find("metric[0].name: \"test_loss\" is a built-in figure") !=
                 std::string::npos,
             e.err);
}

BOOST_AUTO_TEST_CASE(stages_that_are_missing_or_wrong_are_named) {
  csv_job job(crop);
  // No plugin: the type is unknown, and where types come from is said.
  auto o = run_troupe({"run", job.pipeline, "--set", "data.shape=[1,2,2]"});
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err.find("stage[0].type: no data stage \"random_crop_flip\" is "
                        "registered in this process") != std::string::npos,
             o.err);
  BOOST_TEST(o.err.find("--plugin LIB.so") != std::string::npos, o.err);
  o = run_troupe({"run", "--plugin", "/nonexistent.so", job.pipeline});
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err == "troupe: --plugin /nonexistent.so: no such file\n");
  // A bad setting, and data that are no images.
  csv_job bad("[[stage]]\ntype = \"random_crop_flip\"\npad = -1\n");
  o = run_troupe({"run", "--plugin", plugin, bad.pipeline});
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err.find("stage[0].pad: -1 is out of range [0, 64]") !=
                 std::string::npos,
             o.err);
  o = run_troupe({"run", "--plugin", plugin, job.pipeline});
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err.find("stage[0]: random_crop_flip needs images: data.shape "
                        "[C, H, W] (this data is 1-dimensional)") !=
                 std::string::npos,
             o.err);
  // A node started without the plugin refuses the stage, by name.
  background node("troupe",
                  {"node", "--listen", "127.0.0.1:0", "--threads", "1"});
  const auto addr = node.read_line();
  BOOST_REQUIRE(!addr.empty());
  o = run_troupe({"run", "--plugin", plugin, job.pipeline, "--set",
                  "data.shape=[1,2,2]", "--nodes", addr});
  BOOST_TEST(o.code == 3);
  BOOST_TEST(o.err.find("cannot spawn stage:0: ") != std::string::npos, o.err);
  // (CAF quotes the node's reason: its quotes come escaped.)
  BOOST_TEST(o.err.find("refused stage: data stage \\\"random_crop_flip\\\" "
                        "is not registered on this node (start `troupe node` "
                        "with --plugin LIB.so") != std::string::npos,
             o.err);
  BOOST_TEST(node.stop(SIGTERM) == 0);
}

BOOST_AUTO_TEST_SUITE_END()

// Jobs spread over node processes on loopback: placement transparency,
// remote placement of every role, supervision through kills and lost
// nodes, async/ssp bounds, resume, troupe status and kill, and troupe
// node's own life cycle (hostile peers and job isolation are in
// security.test.cpp). Every process started here is stopped here (and
// dies with the test through PDEATHSIG); the tests of how a run stops its
// nodes adopt orphans, so that the kernel's parent-death signal does not
// hide a broken stop path.
#include "tests/jobs.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <filesystem>
#include <netinet/in.h>
#include <set>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace troupe::testing;

BOOST_AUTO_TEST_SUITE(multiprocess)

BOOST_AUTO_TEST_CASE(same_digest_on_one_two_and_three_nodes) {
  csv_job job;
  std::string digest;
  for (int nodes : {1, 2, 3}) {
    auto j = run_json(
        {job.pipeline, "--set", fmt::format("cluster.local_nodes={}", nodes)});
    BOOST_TEST(j["nodes"] == nodes);
    std::set<std::string> used;
    for (auto& [actor, node] : j["placement"].items())
      used.insert(node.get<std::string>());
    BOOST_TEST(used.size() == std::size_t(nodes));
    if (digest.empty())
      digest = j["params_digest"];
    BOOST_TEST(j["params_digest"] == digest, nodes << " node(s)");
    BOOST_TEST(j["test_accuracy"].get<double>() > 0.9);
  }
}

BOOST_AUTO_TEST_CASE(chaos_kills_of_every_role_end_with_the_fault_free_digest) {
  // 6 workers on 3 node processes: aggregators sum two workers each. Each
  // role loses an actor at a different step; param_shard:1 is restored
  // from a snapshot and the workers replay the steps since. Kills 23 or
  // more steps apart, steps of at least 4 ms: each recovery is over before
  // the next kill (one during a recovery rolls the job back instead:
  // another test). What each strategy restarts is checked without timing
  // in actors/supervisor.test.cpp.
  csv_job job(every_role_killed + R"([[chaos]]
kill = "worker:5"
at_step = 118
[testing]
slow_worker = 1
slow_ms = 4
)");
  const auto common = on_three_nodes(job);
  const auto reference = fault_free(common);
  BOOST_TEST(reference["restarts"] == 0);
  for (const std::string strategy :
       {"one_for_one", "rest_for_one", "one_for_all"}) {
    auto args = common;
    args.insert(args.end(), {"--set", "supervision.strategy=" + strategy});
    auto j = run_json(args);
    BOOST_TEST(j["params_digest"] == reference["params_digest"], strategy);
    const auto& by_role = j["restarts_by_role"];
    BOOST_TEST(by_role["param_shard"].get<int>() >= 1, strategy);
    BOOST_TEST(by_role["data_shard"].get<int>() >= 1, strategy);
    BOOST_TEST(by_role["aggregator"].get<int>() >= 1, strategy);
    BOOST_TEST(by_role["worker"].get<int>() >= 2, strategy);
    if (strategy == "one_for_one") {
      BOOST_TEST(j["restarts"] == 5);
      BOOST_TEST(by_role["worker"] == 2);
      BOOST_TEST(j["recovery_ms"].size() == 5u, j["recovery_ms"].dump());
    } else {
      // worker:0 takes workers 1-5 down with it, so the event for worker:5
      // (aimed at its first incarnation) never fires. Every param shard
      // after param_shard:1 is restored from its snapshot too.
      BOOST_TEST(by_role["worker"] == 6);
      BOOST_TEST(by_role["param_shard"] == (strategy == "one_for_all" ? 3 : 2));
      BOOST_TEST(by_role["aggregator"] == 3);
      BOOST_TEST(j["recovery_ms"].size() == 4u, j["recovery_ms"].dump());
    }
    for (auto& ms : j["recovery_ms"])
      BOOST_TEST(ms.get<double>() < 10000);
    // Steps done again count once in the reported loss; a killed worker's
    // steps since its last report (up to 2 of the epoch's 372 worker
    // steps here) are missing from the mean.
    for (int e = 0; e < 2; ++e) {
      const double want = reference["history"][e]["train_loss"];
      BOOST_TEST(std::abs(j["history"][e]["train_loss"].get<double>() - want) <
                     0.03 * want,
                 strategy << " epoch " << e + 1);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_cnn_with_dropout_and_batch_norm_keeps_its_digest) {
  // Every layer kind on the 4 features seen as a 1x2x2 image: dropout
  // masks drawn per (seed, epoch, step, worker), batch-norm running
  // statistics summed over workers on the param shards. The same digest
  // over reruns, partitions 1/2/4, nodes 1/2/3, and after a worker, a param
  // shard, a data shard and an aggregator are killed.
  csv_job job(every_role_killed + R"([testing]
slow_worker = 1
slow_ms = 4
)");
  const std::vector<std::string> cnn{
      job.pipeline, "--set", "data.shape=[1, 2, 2]", "--set",
      R"(model.layers=[{type="conv2d",channels=4,kernel=2,padding=1},)"
      R"({type="batch_norm"},{type="relu"},)"
      R"({type="max_pool2d",kernel=2,stride=1},{type="flatten"},)"
      R"({type="layer_norm"},{type="dropout",rate=0.2},)"
      R"({type="dense",units=16},{type="batch_norm"},{type="tanh"},)"
      R"({type="avg_pool2d",kernel=1}])"};
  // (avg_pool2d on a flat input is refused: checked below.)
  auto with = [&](std::vector<std::string> extra) {
    auto args = cnn;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  auto bad_args = with({"--set", "chaos=[]"});
  bad_args.insert(bad_args.begin(), "run");
  auto bad = run_troupe(bad_args, 60);
  BOOST_TEST(bad.code == 2);
  BOOST_TEST(bad.err.find("model.layers[10] (avg_pool2d): needs an image "
                          "input [channels, height, width], got [16]") !=
                 std::string::npos,
             bad.err);
  auto good = cnn;
  good.back() =
      R"(model.layers=[{type="conv2d",channels=4,kernel=2,padding=1},)"
      R"({type="batch_norm"},{type="relu"},)"
      R"({type="max_pool2d",kernel=2,stride=1},{type="flatten"},)"
      R"({type="layer_norm"},{type="dropout",rate=0.2},)"
      R"({type="dense",units=16},{type="batch_norm"},{type="tanh"},)"
      R"({type="dense",units=3}])";
  auto run = [&](std::vector<std::string> extra) {
    auto args = good;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_json(args);
  };
  const auto reference =
      run({"--set", "chaos=[]", "--set", "cluster.local_nodes=1"});
  const std::string digest = reference["params_digest"];
  BOOST_TEST(reference["test_accuracy"].get<double>() > 0.85);
  BOOST_TEST(run({"--set", "chaos=[]", "--set",
                  "cluster.local_nodes=1"})["params_digest"] ==
             digest); // rerun
  for (int nodes : {2, 3})
    BOOST_TEST(run({"--set", "chaos=[]", "--set",
                    fmt::format("cluster.local_nodes={}",
                                nodes)})["params_digest"] == digest,
               nodes << " nodes");
  for (int partitions : {1, 2, 4})
    BOOST_TEST(
        run({"--set", "chaos=[]", "--set", "cluster.local_nodes=3", "--set",
             fmt::format("model.partitions={}",
                         partitions)})["params_digest"] == digest,
        partitions << " partitions");
  auto killed = run({"--set", "cluster.local_nodes=3", "--set",
                     "supervision.snapshot_every=10"});
  BOOST_TEST(killed["params_digest"] == digest);
  BOOST_TEST(killed["restarts"].get<int>() >= 4);
  // Dropout differs between workers and steps: without it the digest
  // changes (the masks are not all ones).
  auto no_dropout = good;
  const auto at = no_dropout.back().find("rate=0.2");
  no_dropout.back().replace(at, 8, "rate=0.0");
  no_dropout.insert(no_dropout.end(),
                    {"--set", "chaos=[]", "--set", "cluster.local_nodes=1"});
  BOOST_TEST(run_json(no_dropout)["params_digest"] != digest);
}

BOOST_AUTO_TEST_CASE(
    steps_on_a_detached_helper_as_gpu_workers_keep_the_digest) {
  // GPU workers hand each step to a detached helper that owns the device;
  // testing.detached_compute takes that path on the CPU. Sync: the same
  // bits as computing in place, through kills of a worker (and its helper)
  // and a param shard. Async: every gradient applied once.
  csv_job job(R"([[chaos]]
kill = "worker:0"
at_step = 20
[[chaos]]
kill = "param_shard:1"
at_step = 47
[testing]
slow_worker = 1
slow_ms = 4
)");
  const std::vector<std::string> common{job.pipeline, "--set",
                                        "cluster.local_nodes=2", "--set",
                                        "supervision.snapshot_every=10"};
  const auto reference = fault_free(common);
  auto args = common;
  args.insert(args.end(), {"--set", "testing.detached_compute=true"});
  const auto offloaded = run_json(args);
  BOOST_TEST(offloaded["params_digest"] == reference["params_digest"]);
  BOOST_TEST(offloaded["restarts_by_role"]["worker"] == 1);
  BOOST_TEST(offloaded["restarts_by_role"]["param_shard"] == 1);
  // 125 steps; a worker keeps gradients from the second newest snapshot
  // on (10 steps apart, plus the steps a snapshot takes to reach the disk)
  // and lets go of pruned ones beyond its replay window of 34: in place
  // and offloaded alike, what it holds stays bounded. Keeping every pruned
  // gradient, as offloaded workers did, held about one a step (~125).
  for (const auto* j : {&reference, &offloaded}) {
    BOOST_TEST((*j)["gradient_buffers"].get<int>() < 100,
               (*j)["gradient_buffers"]);
    BOOST_TEST((*j)["gradient_buffers"].get<int>() >= 20,
               (*j)["gradient_buffers"]);
  }
  args.insert(args.end(), {"--set", "job.mode=async"});
  const auto async = run_json(args);
  BOOST_TEST(async["gradients_applied"] == async["gradients_pushed"]);
  BOOST_TEST(async["test_accuracy"].get<double>() > 0.9);
}

BOOST_AUTO_TEST_CASE(overlapping_failures_and_a_lost_node_keep_the_digest) {
  // Three actors fail on consecutive steps, so later ones fail while the
  // first recovers: the job rolls back to its newest checkpoint. Then a
  // node is killed: its actors move to the other two nodes.
  csv_job job(R"([[chaos]]
kill = "worker:4"
at_step = 8
[[chaos]]
kill = "param_shard:0"
at_step = 9
[[chaos]]
kill = "aggregator:1"
at_step = 10
[[chaos]]
kill = "node:node2"
at_step = 60
)");
  const auto common = on_three_nodes(job);
  const auto reference = fault_free(common);
  for (const std::string strategy : {"one_for_one", "rest_for_one"}) {
    auto args = common;
    args.insert(args.end(), {"--set", "supervision.strategy=" + strategy});
    auto j = run_json(args);
    BOOST_TEST(j["params_digest"] == reference["params_digest"], strategy);
    BOOST_TEST(j["lost_nodes"] == json::parse(R"(["node2"])"), strategy);
    BOOST_TEST(j["rollbacks"].get<int>() >= 1, strategy);
    BOOST_TEST(j["fault_detection_ms"].size() == 1u, strategy);
    for (auto& [actor, node] : j["placement"].items())
      BOOST_TEST(node != "node2", actor);
    // At least two of the kills (a rollback respawns every actor, and a
    // chaos entry aims at one incarnation: the third may find its target
    // replaced already), and every actor that was on node2.
    int on_node2 = 0;
    for (auto& [actor, node] : reference["placement"].items())
      on_node2 += node == "node2" ? 1 : 0;
    BOOST_TEST(on_node2 >= 3);
    BOOST_TEST(j["restarts"].get<int>() >= 2 + on_node2,
               strategy << ": " << j["restarts_by_role"].dump());
    // train_loss is the mean over the steps reported: a killed worker's
    // steps since its last report are not (a few of the 372 here).
    for (int e = 0; e < 2; ++e) {
      const double want = reference["history"][e]["train_loss"];
      BOOST_TEST(std::abs(j["history"][e]["train_loss"].get<double>() - want) <
                     0.03 * want,
                 strategy << " epoch " << e + 1 << ": "
                          << j["history"][e]["train_loss"] << " against "
                          << want);
    }
  }
}

BOOST_AUTO_TEST_CASE(async_and_ssp_kills_apply_every_gradient_exactly_once) {
  // The kills of the sync chaos test, in async and ssp mode: results differ
  // from a fault-free run (arrival order decides them), but every gradient
  // pushed is applied by every param shard exactly once.
  csv_job job(every_role_killed);
  for (const std::string mode : {"async", "ssp"}) {
    const std::vector<std::string> common{job.pipeline,
                                          "--set",
                                          "cluster.local_nodes=3",
                                          "--set",
                                          "cluster.workers=6",
                                          "--set",
                                          "supervision.snapshot_every=10",
                                          "--set",
                                          "job.mode=" + mode,
                                          "--set",
                                          "job.staleness=2"};
    const auto reference = fault_free(common);
    BOOST_TEST(reference["gradients_applied"] == reference["gradients_pushed"]);
    BOOST_TEST(reference["duplicates_dropped"] == 0);
    const auto j = run_json(common);
    BOOST_TEST(j["gradients_pushed"] == reference["gradients_pushed"], mode);
    BOOST_TEST(j["gradients_applied"] == j["gradients_pushed"], mode);
    // Each kill fires unless a rollback (a failure during another
    // recovery) replaced its target first.
    const auto& by_role = j["restarts_by_role"];
    BOOST_TEST(by_role.value("worker", 0) >= 1, mode);
    BOOST_TEST(by_role.value("param_shard", 0) >= 1, mode);
    BOOST_TEST(j["restarts"].get<int>() + j["rollbacks"].get<int>() >= 4,
               mode << ": " << by_role.dump());
    BOOST_TEST(j["test_accuracy"].get<double>() > 0.88, mode);
    if (mode == "ssp")
      BOOST_TEST(j["max_lead"].get<int>() <= 2);
  }
}

BOOST_AUTO_TEST_CASE(
    one_worker_async_and_ssp_equal_sync_through_kills_and_node_loss) {
  // An oracle on the parameters for async and ssp: with one worker the
  // order gradients are applied in is forced, so the parameters must be
  // sync's, bit for bit. A gradient lost, or applied twice by a restored
  // shard, changes them; the counters alone would not show it.
  csv_job job;
  const std::vector<std::string> one_worker{
      job.pipeline,
      "--set",
      "data.shards=1",
      "--set",
      "cluster.workers=1",
      "--set",
      "cluster.local_nodes=2",
      "--set",
      "supervision.snapshot_every=10",
      "--set",
      "supervision.heartbeat_timeout_s=2"};
  const auto sync = run_json(one_worker);
  BOOST_TEST(sync["test_accuracy"].get<double>() > 0.9);
  const std::string every_role =
      R"(chaos=[{kill="worker:0",at_step=20},{kill="param_shard:1",at_step=45},)"
      R"({kill="data_shard:0",at_step=70},{kill="aggregator:0",at_step=90},)"
      R"({kill="param_shard:0",at_step=100},{kill="worker:0",at_step=110}])";
  for (const std::string mode : {"async", "ssp"}) {
    auto args = one_worker;
    args.insert(args.end(), {"--set", "job.mode=" + mode});
    const auto clean = run_json(args);
    BOOST_TEST(clean["params_digest"] == sync["params_digest"], mode);
    BOOST_TEST(clean["gradients_applied"] == clean["gradients_pushed"], mode);
    auto kills = args;
    kills.insert(kills.end(), {"--set", every_role});
    const auto k = run_json(kills);
    BOOST_TEST(k["params_digest"] == sync["params_digest"], mode);
    BOOST_TEST(k["gradients_applied"] == clean["gradients_pushed"], mode);
    // Restored shards made the worker resend gradients that the other
    // shards had applied: they were dropped, not applied again.
    BOOST_TEST(k["duplicates_dropped"].get<int>() > 0, mode);
    const auto& by_role = k["restarts_by_role"];
    BOOST_TEST(by_role.value("worker", 0) >= 1, mode << by_role.dump());
    BOOST_TEST(by_role.value("param_shard", 0) >= 1, mode << by_role.dump());
    for (const std::string node : {"node0", "node1"}) {
      auto lost = args;
      lost.insert(lost.end(), {"--set", R"(chaos=[{kill="node:)" + node +
                                            R"(",at_step=60}])"});
      const auto n = run_json(lost);
      BOOST_TEST(n["params_digest"] == sync["params_digest"], mode << node);
      BOOST_TEST(n["lost_nodes"].size() == 1u, mode << node);
      BOOST_TEST(n["gradients_applied"] == clean["gradients_pushed"],
                 mode << node);
    }
  }
}

BOOST_AUTO_TEST_CASE(snapshot_dirs_of_killed_jobs_are_removed) {
  // A job killed with SIGKILL leaves its snapshot directory; the next job
  // removes those of processes that are gone, and only those.
  const pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  waitpid(dead, nullptr, 0);
  const auto base = std::filesystem::temp_directory_path();
  const auto orphan = base / fmt::format("troupe-snapshots-{}-test", dead);
  const auto alive_dir =
      base / fmt::format("troupe-snapshots-{}-test", getpid());
  std::filesystem::create_directories(orphan);
  std::filesystem::create_directories(alive_dir);
  write_text((orphan / "param_shard-0-v000000000010.snap").string(), "x");
  // At least 10 ms a step: the job trains for over a second.
  csv_job job("[testing]\nslow_worker = 0\nslow_ms = 10\n");
  background run("troupe", {"run", job.pipeline, "--set",
                            "cluster.local_nodes=2", "--json"});
  const auto own = fmt::format("troupe-snapshots-{}-", run.pid());
  auto own_dirs = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(base))
      n += e.path().filename().string().rfind(own, 0) == 0;
    return n;
  };
  // The job's own directory exists while it trains...
  BOOST_REQUIRE_MESSAGE(wait_for_text(run, "training:", 60) >= 0, run.err());
  BOOST_TEST(own_dirs() == 1);
  run.read_rest();
  BOOST_TEST(run.wait(60000) == 0, run.err());
  // ... and is removed when it ends, with the orphan it found.
  BOOST_TEST(own_dirs() == 0);
  BOOST_TEST(!std::filesystem::exists(orphan));
  BOOST_TEST(std::filesystem::exists(alive_dir));
  std::filesystem::remove_all(alive_dir);
}

BOOST_AUTO_TEST_CASE(a_restarted_evaluator_still_reports_every_epoch) {
  // Killed when given epoch 1's parameters (step 62): the coordinator keeps
  // them until evaluated and sends them to the new evaluator.
  csv_job job("[[chaos]]\nkill = \"evaluator:0\"\nat_step = 60\n");
  const std::vector<std::string> common{job.pipeline, "--set",
                                        "cluster.local_nodes=2"};
  const auto reference = fault_free(common);
  const auto j = run_json(common);
  BOOST_TEST(j["restarts_by_role"]["evaluator"] == 1);
  BOOST_TEST(j["params_digest"] == reference["params_digest"]);
  BOOST_REQUIRE_EQUAL(j["history"].size(), 2u);
  for (int e = 0; e < 2; ++e)
    BOOST_TEST(j["history"][e]["test_accuracy"] ==
                   reference["history"][e]["test_accuracy"],
               "epoch " << e + 1);
}

BOOST_AUTO_TEST_CASE(every_role_on_nodes_given_with_nodes) {
  csv_job job(
      "[placement]\nworker = [\"b\", \"a\", \"a\"]\nparam_shard = \"b\"\n"
      "data_shard = [\"b\", \"b\", \"a\"]\nevaluator = \"a\"\n");
  background a("troupe", {"node", "--listen", "127.0.0.1:0", "--name", "a",
                          "--threads", "1"});
  background b("troupe", {"node", "--listen", "127.0.0.1:0", "--name", "b",
                          "--threads", "1"});
  const auto addr_a = a.read_line();
  const auto addr_b = b.read_line();
  BOOST_REQUIRE(!addr_a.empty());
  BOOST_REQUIRE(!addr_b.empty());
  auto j = run_json({job.pipeline, "--nodes", addr_a + "," + addr_b});
  const auto& p = j["placement"];
  BOOST_TEST(p["worker:0"] == "b");
  BOOST_TEST(p["worker:1"] == "a");
  BOOST_TEST(p["param_shard:2"] == "b");
  BOOST_TEST(p["data_shard:2"] == "a");
  BOOST_TEST(p["evaluator"] == "a");
  BOOST_TEST(p["aggregator:0"] == "b"); // ranks [0, 1) on b
  BOOST_TEST(p["aggregator:1"] == "a"); // ranks [1, 3) on a
  // Same job in one process, placement cleared: same bits.
  // (Compared as strings, so that a failure prints both digests.)
  auto local = run_json({job.pipeline, "--set", "placement={}"});
  const std::string want = local["params_digest"];
  BOOST_TEST(j["params_digest"].get<std::string>() == want);
  // The nodes are still there for the next job, and stop cleanly.
  auto again = run_json({job.pipeline, "--nodes", addr_a + "," + addr_b});
  BOOST_TEST(again["params_digest"].get<std::string>() == want);
  BOOST_TEST(a.stop(SIGTERM) == 0);
  BOOST_TEST(b.stop(SIGINT) == 0);
}

BOOST_AUTO_TEST_CASE(large_slices_cross_nodes_in_chunks) {
  // 320k parameters on one shard: slices travel between nodes as 1 MiB
  // chunks and are assembled by offset; the bits must not change.
  csv_job job;
  const std::vector<std::string> big{
      job.pipeline,
      "--set",
      "job.epochs=1",
      "--set",
      "model.partitions=1",
      "--set",
      "model.layers=[{type=\"dense\",units=40000},{type=\"relu\"},{type="
      "\"dense\",units=3}]"};
  auto local = run_json(big);
  auto args = big;
  args.insert(args.end(), {"--set", "cluster.local_nodes=2"});
  auto spread = run_json(args);
  BOOST_TEST(local["param_count"] == 320003);
  BOOST_TEST(spread["params_digest"] == local["params_digest"]);
  args.insert(args.end(), {"--set", "job.mode=async"});
  auto async = run_json(args);
  BOOST_TEST(async["gradients_pushed"] == 3 * async["steps"].get<int>());
  BOOST_TEST(async["test_accuracy"].get<double>() > 0.88);
  auto bench = run_troupe({"bench", "allreduce", "--nodes", "2", "--bytes",
                           "4MiB", "--iterations", "5", "--json"});
  BOOST_TEST_INFO(bench.err);
  BOOST_REQUIRE(bench.code == 0);
  auto j = json::parse(bench.out);
  BOOST_TEST(j["bytes"] == 4194304);
  BOOST_TEST(j["iterations"] == 5); // timed; a warm-up pass runs first
  BOOST_TEST(j["us_per_op"].get<double>() > 0);
}

BOOST_AUTO_TEST_CASE(unknown_node_name_in_placement_is_bad_input) {
  csv_job job("[placement]\nworker = \"nowhere\"\n");
  auto o = run_troupe({"run", job.pipeline, "--set", "cluster.local_nodes=2"});
  BOOST_TEST(o.code == 2);
  BOOST_TEST(o.err.find("placement.worker: no node named \"nowhere\"") !=
                 std::string::npos,
             o.err);
}

BOOST_AUTO_TEST_CASE(unreachable_nodes_exit_3_naming_the_address) {
  csv_job job;
  // Nobody listens on a port we just released.
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  const auto port = ntohs(addr.sin_port);
  close(s);
  const auto closed = fmt::format("127.0.0.1:{}", port);
  auto t0 = std::chrono::steady_clock::now();
  auto o = run_troupe({"run", job.pipeline, "--nodes", closed}, 60);
  BOOST_TEST(o.code == 3);
  BOOST_TEST(o.err.find(closed) != std::string::npos, o.err);
  BOOST_TEST(seconds_since(t0) < 20);
  // A port that accepts connections but never speaks: bounded by
  // --connect-timeout.
  int silent = socket(AF_INET, SOCK_STREAM, 0);
  addr.sin_port = 0;
  BOOST_REQUIRE(
      bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  listen(silent, 4);
  len = sizeof(addr);
  getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len);
  const auto mute = fmt::format("127.0.0.1:{}", ntohs(addr.sin_port));
  t0 = std::chrono::steady_clock::now();
  o = run_troupe(
      {"run", job.pipeline, "--nodes", mute, "--connect-timeout", "2"}, 60);
  close(silent);
  BOOST_TEST(o.code == 3);
  BOOST_TEST(o.err.find(mute) != std::string::npos, o.err);
  BOOST_TEST(seconds_since(t0) < 20);
  // A node that died before the job: exit 3 as well.
  background dead("troupe", {"node", "--listen", "127.0.0.1:0"});
  const auto gone = dead.read_line();
  BOOST_REQUIRE(!gone.empty());
  dead.stop(SIGKILL);
  o = run_troupe({"run", job.pipeline, "--nodes", gone}, 60);
  BOOST_TEST(o.code == 3);
  BOOST_TEST(o.err.find(gone) != std::string::npos, o.err);
  // A malformed address is bad input.
  o = run_troupe({"run", job.pipeline, "--nodes", "localhost"}, 60);
  BOOST_TEST(o.code == 2);
}

BOOST_AUTO_TEST_CASE(ssp_keeps_workers_within_the_staleness_bound) {
  // Worker 1 is slowed down: async lets the others run far ahead, ssp holds
  // them to 2 steps.
  csv_job job("[testing]\nslow_worker = 1\nslow_ms = 2\n");
  auto ssp = run_json({job.pipeline, "--set", "job.mode=ssp", "--set",
                       "job.staleness=2", "--set", "cluster.local_nodes=2"});
  BOOST_TEST(ssp["max_lead"].get<int>() <= 2);
  BOOST_TEST(ssp["max_lead"].get<int>() >= 1); // the bound was reached
  BOOST_TEST(ssp["gradients_pushed"] == 3 * ssp["steps"].get<int>());
  auto async = run_json({job.pipeline, "--set", "job.mode=async", "--set",
                         "cluster.local_nodes=2"});
  BOOST_TEST(async["max_lead"].get<int>() > 2);
  BOOST_TEST(async["test_accuracy"].get<double>() > 0.9);
  BOOST_TEST(ssp["test_accuracy"].get<double>() > 0.9);
}

BOOST_AUTO_TEST_CASE(status_of_a_running_job) {
  csv_job job("[testing]\nslow_worker = 0\nslow_ms = 20\n");
  // Three epochs of at least 20 ms a step: about 4 s of training, far
  // longer than one status request takes.
  background run("troupe",
                 {"run", job.pipeline, "--set", "cluster.local_nodes=2",
                  "--set", "job.epochs=3", "--json"});
  // The coordinator's address is on stderr once the job is placed;
  // "training:" once every worker is ready and training began.
  BOOST_REQUIRE_MESSAGE(wait_for_text(run, "training:", 60) >= 0, run.err());
  std::string coordinator;
  {
    const auto err = run.err();
    const auto pos = err.find("troupe status --coordinator ");
    BOOST_REQUIRE_MESSAGE(pos != std::string::npos, err);
    const auto end = err.find(')', pos);
    coordinator = err.substr(pos + 28, end - pos - 28);
  }
  auto o = run_troupe({"status", "--coordinator", coordinator, "--json"}, 30);
  BOOST_TEST_INFO(o.err);
  BOOST_REQUIRE(o.code == 0);
  auto s = json::parse(o.out);
  BOOST_TEST(s["nodes"].size() == 2u);
  const int steps = 3 * (3000 / 3 / 16);
  BOOST_TEST(s["steps"].get<int>() == steps);
  BOOST_TEST(s["state"] == "training", s.dump());
  BOOST_TEST(s["step"].get<int>() >= 0);
  BOOST_TEST(s["step"].get<int>() < steps, s.dump());
  BOOST_TEST(s["restarts"].empty(), s.dump()); // nothing failed
  std::size_t actors = 0;
  for (auto& n : s["nodes"]) {
    actors += n["actors"].size();
    BOOST_TEST(n["devices"][0] == "cpu"); // what each node offers workers
  }
  BOOST_TEST(actors ==
             3u + 3u + 3u + 1u + 2u); // data, param, workers, eval, aggregators
  auto rest = run.read_rest();
  BOOST_TEST(run.wait(60000) == 0);
  BOOST_TEST(json::parse(rest)["nodes"] == 2);
  // Once the job is over, status reports the coordinator unreachable.
  auto after = run_troupe(
      {"status", "--coordinator", coordinator, "--timeout", "2"}, 30);
  BOOST_TEST(after.code == 3);
}

BOOST_AUTO_TEST_CASE(troupe_kill_restarts_the_actor_and_the_digest_holds) {
  csv_job job("[testing]\nslow_worker = 0\nslow_ms = 30\n");
  const std::vector<std::string> args{
      "run", job.pipeline, "--set", "cluster.local_nodes=2", "--json", "-q"};
  const auto reference =
      run_json({job.pipeline, "--set", "cluster.local_nodes=2"});
  background run("troupe", {"run", job.pipeline, "--set",
                            "cluster.local_nodes=2", "--json"});
  std::string coordinator;
  for (int i = 0; i < 300 && coordinator.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto err = run.err();
    auto pos = err.find("troupe status --coordinator ");
    if (pos != std::string::npos &&
        err.find("training:") != std::string::npos) {
      auto end = err.find(')', pos);
      coordinator = err.substr(pos + 28, end - pos - 28);
    }
  }
  BOOST_REQUIRE_MESSAGE(!coordinator.empty(), run.err());
  auto k = run_troupe({"kill", "--coordinator", coordinator, "worker:1"}, 30);
  BOOST_TEST(k.code == 0, k.err);
  BOOST_TEST(k.out == "killed worker:1\n");
  // The second kill once the first recovery is over (one during it would
  // roll the job back instead).
  BOOST_REQUIRE_MESSAGE(wait_for_text(run, "worker:1 recovered", 60) >= 0,
                        run.err());
  k = run_troupe({"kill", "--coordinator", coordinator, "param_shard:0"}, 30);
  BOOST_TEST(k.code == 0, k.err);
  k = run_troupe({"kill", "--coordinator", coordinator, "wizard:3"}, 30);
  BOOST_TEST(k.code == 2, k.err); // (stderr said, should it ever abort)
  BOOST_TEST(k.err.find("no actor wizard:3 in this job") != std::string::npos,
             k.err);
  auto rest = run.read_rest();
  BOOST_TEST(run.wait(60000) == 0, run.err());
  const auto j = json::parse(rest);
  BOOST_TEST(j["params_digest"] == reference["params_digest"]);
  BOOST_TEST(j["restarts_by_role"]["worker"] == 1);
  BOOST_TEST(j["restarts_by_role"]["param_shard"] == 1);
  BOOST_TEST(run.err().find("worker:1 on node") != std::string::npos);
}

namespace {

// While it lives, this process adopts the orphans among its descendants
// (PR_SET_CHILD_SUBREAPER) instead of init. A node process its `troupe run`
// did not stop and wait for, alive or killed by the kernel's parent-death
// signal when the run exited, becomes our child: a stop path that works
// can be told from one the kernel would hide.
struct adopting_orphans {
  adopting_orphans() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
  ~adopting_orphans() { prctl(PR_SET_CHILD_SUBREAPER, 0); }
  adopting_orphans(const adopting_orphans&) = delete;
  adopting_orphans& operator=(const adopting_orphans&) = delete;

  // Whether `pid` (a node of a run that has exited) was left to us. Reaps
  // it if so, killing it first when it is still alive.
  static bool left_behind(pid_t pid) {
    int status = 0;
    const auto r = waitpid(pid, &status, WNOHANG);
    if (r == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return true;
    }
    return r == pid;
  }
};

// A job slow enough to be caught mid-run, and the pids of its local nodes.
struct running_job {
  csv_job job{"[testing]\nslow_worker = 0\nslow_ms = 20\n"};
  background run{"troupe",
                 {"run", job.pipeline, "--set", "cluster.local_nodes=2",
                  "--set", "job.epochs=3"}};
  std::vector<pid_t> nodes;
  running_job() {
    for (int i = 0; i < 300; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (run.err().find("training:") != std::string::npos)
        break;
    }
    nodes = children_of(run.pid());
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(too_many_restarts_end_the_job_naming_the_actor) {
  csv_job job(R"([supervision]
max_restarts = 1
within_s = 60
[[chaos]]
kill = "worker:1"
at_step = 10
[[chaos]]
kill = "worker:1"
at_step = 30
)");
  adopting_orphans adopt;
  background run{"troupe",
                 {"run", job.pipeline, "--set", "cluster.local_nodes=2"}};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<pid_t> nodes;
  for (int i = 0; i < 500 && nodes.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    nodes = children_of(run.pid());
  }
  BOOST_REQUIRE_EQUAL(nodes.size(), 2u);
  const int code = run.wait(60000);
  BOOST_TEST(code == 1, run.err());
  BOOST_TEST(seconds_since(t0) < 30);
  const auto err = run.err();
  BOOST_TEST(err.find("worker:1 on node node") != std::string::npos, err);
  BOOST_TEST(err.find("supervision gave up: worker:1") != std::string::npos,
             err);
  BOOST_TEST(err.find("supervision.max_restarts = 1") != std::string::npos,
             err);
  for (auto pid : nodes)
    BOOST_TEST(!adopting_orphans::left_behind(pid),
               "node process " << pid << " was left behind");
}

BOOST_AUTO_TEST_CASE(a_node_killed_mid_run_moves_its_actors_digest_holds) {
  csv_job job{"[testing]\nslow_worker = 0\nslow_ms = 20\n"};
  const auto reference = run_json({job.pipeline, "--set", "job.epochs=3"});
  adopting_orphans adopt;
  background run{"troupe",
                 {"run", job.pipeline, "--set", "cluster.local_nodes=2",
                  "--set", "job.epochs=3", "--json"}};
  // Mid-run: once the first of three epochs is reported.
  BOOST_REQUIRE_MESSAGE(wait_for_text(run, "epoch 1/3", 60) >= 0, run.err());
  const auto nodes = children_of(run.pid());
  BOOST_REQUIRE_EQUAL(nodes.size(), 2u);
  kill(nodes[1], SIGKILL);
  auto rest = run.read_rest();
  const int code = run.wait(60000);
  BOOST_TEST(code == 0, run.err());
  const auto err = run.err();
  BOOST_TEST(err.find("node node1 lost") != std::string::npos, err);
  BOOST_TEST(err.find("rolling the job back to its newest checkpoint") !=
                 std::string::npos,
             err);
  const auto j = json::parse(rest);
  BOOST_TEST(j["params_digest"] == reference["params_digest"]);
  BOOST_TEST(j["lost_nodes"] == json::parse(R"(["node1"])"));
  BOOST_TEST(j["rollbacks"] == 1);
  // Every actor ended on the surviving node.
  BOOST_TEST(j["placement"].size() >= 5u, j["placement"].dump());
  for (auto& [actor, node] : j["placement"].items())
    BOOST_TEST(node == "node0", actor << " on " << node);
  // Both reaped by the run: the survivor stopped, the killed one waited for.
  for (auto pid : nodes)
    BOOST_TEST(!adopting_orphans::left_behind(pid),
               "node process " << pid << " was left behind");
}

BOOST_AUTO_TEST_CASE(killed_and_frozen_nodes_end_with_the_fault_free_digest) {
  // Nodes started by the test (--nodes): one is killed with SIGKILL, later
  // another is frozen with SIGSTOP; the job finishes on the third.
  csv_job job("[testing]\nslow_worker = 0\nslow_ms = 25\n"
              "[supervision]\nheartbeat_s = 0.2\nheartbeat_timeout_s = 1.5\n"
              "snapshot_every = 10\n");
  const auto reference =
      run_json({job.pipeline, "--set", "cluster.local_nodes=3"});
  std::vector<std::unique_ptr<background>> nodes;
  std::vector<std::string> addresses;
  for (int i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<background>(
        "troupe",
        std::vector<std::string>{"node", "--listen", "127.0.0.1:0", "--json",
                                 "--name", fmt::format("n{}", i), "--heartbeat",
                                 "0.2", "--heartbeat-timeout", "1.5"}));
    auto line = nodes.back()->read_line();
    BOOST_REQUIRE(!line.empty());
    addresses.push_back(json::parse(line)["address"]);
  }
  background run("troupe",
                 {"run", job.pipeline, "--nodes",
                  fmt::format("{}", fmt::join(addresses, ",")), "--json"});
  BOOST_REQUIRE_MESSAGE(wait_for_text(run, "training:") >= 0, run.err());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(nodes[1]->pid(), SIGKILL);
  BOOST_REQUIRE_MESSAGE(wait_for_text(run, "the job goes on from step") >= 0,
                        run.err());
  {
    // troupe status marks the lost node.
    const auto err = run.err();
    const auto pos = err.find("troupe status --coordinator ");
    BOOST_REQUIRE(pos != std::string::npos);
    const auto end = err.find(')', pos);
    const auto coordinator = err.substr(pos + 28, end - pos - 28);
    auto o = run_troupe({"status", "--coordinator", coordinator, "--json"}, 30);
    BOOST_REQUIRE_MESSAGE(o.code == 0, o.err);
    const auto s = json::parse(o.out);
    BOOST_REQUIRE_EQUAL(s["nodes"].size(), 3u);
    for (auto& n : s["nodes"])
      BOOST_TEST(n["lost"] == (n["name"] == "n1"), n.dump());
    // The actors n1 had were restarted elsewhere, each counted once.
    BOOST_TEST(!s["restarts"].empty(), s.dump());
    for (auto& [actor, n] : s["restarts"].items())
      BOOST_TEST(n == 1, actor);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(nodes[2]->pid(), SIGSTOP);
  // Found lost within the heartbeat timeout (1.5 s), give or take a beat.
  const auto detected = wait_for_text(run, "node n2 lost");
  BOOST_TEST(detected >= 0, run.err());
  BOOST_TEST(detected < 3.0, "frozen node found lost after " << detected);
  auto rest = run.read_rest();
  BOOST_TEST(run.wait(60000) == 0, run.err());
  const auto j = json::parse(rest);
  BOOST_TEST(j["params_digest"] == reference["params_digest"]);
  BOOST_TEST(j["lost_nodes"] == json::parse(R"(["n1","n2"])"));
  BOOST_TEST(j["rollbacks"] == 2);
  int by_actor = 0;
  for (auto& [actor, n] : j["restarts_by_actor"].items())
    by_actor += n.get<int>();
  BOOST_TEST(by_actor == j["restarts"].get<int>());
  for (auto& [actor, node] : j["placement"].items())
    BOOST_TEST(node == "n0", actor << " on " << node);
  kill(nodes[2]->pid(), SIGKILL);
  for (auto& n : nodes)
    n->stop(SIGTERM, 5000);
}

BOOST_AUTO_TEST_CASE(a_run_stops_and_waits_for_its_nodes_however_it_ends) {
  // Its nodes are gone before `troupe run` is: none is left to this test,
  // which adopts orphans, after an interrupt, a SIGTERM or a normal end.
  adopting_orphans adopt;
  for (const int sig : {SIGINT, SIGTERM, 0}) {
    running_job r;
    BOOST_REQUIRE_MESSAGE(r.nodes.size() == 2u, r.run.err());
    const int code = sig != 0 ? r.run.stop(sig, 15000) : r.run.wait(120000);
    BOOST_TEST(code == (sig != 0 ? 128 + sig : 0), r.run.err());
    if (sig != 0) // not silently
      BOOST_TEST(
          r.run.err().find(
              sig == SIGINT
                  ? "troupe: interrupted (SIGINT): the job stops here"
                  : "troupe: terminated (SIGTERM): the job stops here") !=
              std::string::npos,
          r.run.err());
    for (auto pid : r.nodes)
      BOOST_TEST(!adopting_orphans::left_behind(pid),
                 "signal " << sig << ": node process " << pid
                           << " was left behind");
  }
}

BOOST_AUTO_TEST_CASE(node_prints_its_address_and_stops_on_sigterm) {
  background n("troupe",
               {"node", "--listen", "127.0.0.1:0", "--json", "--name", "n1"});
  auto line = n.read_line();
  BOOST_REQUIRE(!line.empty());
  auto j = json::parse(line);
  BOOST_TEST(j["name"] == "n1");
  BOOST_TEST(j["address"].get<std::string>().rfind("127.0.0.1:", 0) == 0u);
  BOOST_TEST(j["cores"].get<int>() >= 1);
  BOOST_TEST(j["devices"][0] == "cpu");
  auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(n.stop(SIGTERM) == 0);
  BOOST_TEST(seconds_since(t0) < 3);
  // No machine has 100 GPUs; without the CUDA backend the message says so.
  auto bad = run_troupe({"node", "--devices", "cuda:99"});
  BOOST_TEST(bad.code == 2);
  BOOST_TEST(bad.err.find("troupe node: --devices cuda:99: ") == 0u, bad.err);
}

// The snapshot files in a checkpoint directory, by name, sorted.
std::vector<std::string> list_snapshot_names(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

BOOST_AUTO_TEST_CASE(a_killed_run_resumes_from_its_checkpoint) {
  csv_job job("[testing]\nslow_worker = 0\nslow_ms = 10\n"
              "[supervision]\nsnapshot_every = 10\n");
  temp_dir ck;
  const auto dir = ck.file("checkpoints");
  const std::vector<std::string> common{job.pipeline, "--set",
                                        "cluster.local_nodes=2"};
  const auto reference = run_json(common);
  {
    auto args = common;
    args.insert(args.begin(), "run");
    args.insert(args.end(), {"--checkpoint-dir", dir});
    background run("troupe", args);
    // Killed with SIGKILL once every shard has a snapshot at step 40 or
    // later.
    bool ready = false;
    for (int i = 0; i < 600 && !ready; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::set<std::int32_t> at40;
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        const auto f = e.path().filename().string();
        for (int s = 0; s < 3; ++s)
          if (f.rfind(fmt::format("param_shard-{}-v", s), 0) == 0 &&
              f.size() > 17 && f.substr(f.size() - 5) == ".snap" &&
              std::stoll(f.substr(f.find("-v") + 2)) >= 40)
            at40.insert(s);
      }
      ready = at40.size() == 3;
    }
    BOOST_REQUIRE_MESSAGE(ready, run.err());
    auto nodes = children_of(run.pid());
    BOOST_TEST(run.stop(SIGKILL, 10000) == 128 + SIGKILL);
    // A SIGKILLed run stops nothing itself: its nodes die of the
    // parent-death signal, within moments.
    for (auto pid : nodes) {
      for (int i = 0; i < 500 && alive(pid); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      BOOST_TEST(!alive(pid), "node process " << pid << " left behind");
    }
  }
  // Without --resume the checkpoints are not overwritten.
  auto again = common;
  again.insert(again.begin(), "run");
  again.insert(again.end(), {"--checkpoint-dir", dir});
  auto refused = run_troupe(again);
  BOOST_TEST(refused.code == 2);
  BOOST_TEST(refused.err.find("holds checkpoints already") != std::string::npos,
             refused.err);
  // The newest checkpoint (a version every shard has) is damaged: shard
  // 1's file loses its tail.
  std::map<std::int64_t, int> shards_at;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto f = e.path().filename().string();
    if (f.rfind("param_shard-", 0) == 0 && f.substr(f.size() - 5) == ".snap")
      ++shards_at[std::stoll(f.substr(f.find("-v") + 2))];
  }
  std::int64_t newest = -1;
  for (const auto& [version, n] : shards_at)
    if (n == 3)
      newest = version;
  BOOST_REQUIRE(newest >= 40);
  const auto damaged =
      fmt::format("{}/param_shard-1-v{:012}.snap", dir, newest);
  std::filesystem::resize_file(damaged,
                               std::filesystem::file_size(damaged) - 64);
  auto resumed = common;
  resumed.insert(resumed.end(), {"--checkpoint-dir", dir, "--resume"});
  std::vector<std::string> all{"run"};
  all.insert(all.end(), resumed.begin(), resumed.end());
  all.push_back("--json");
  auto o = run_troupe(all, 120);
  BOOST_REQUIRE_MESSAGE(o.code == 0, o.err);
  const auto j = json::parse(o.out);
  BOOST_TEST(j["params_digest"] == reference["params_digest"]);
  BOOST_TEST(j["resumed_from"].get<std::int64_t>() >= 30);
  BOOST_TEST(j["resumed_from"].get<std::int64_t>() < newest);
  BOOST_TEST(o.err.find(damaged) != std::string::npos, o.err);
  BOOST_TEST(o.err.find("truncated") != std::string::npos, o.err);
  BOOST_TEST(std::filesystem::exists(damaged + ".bad"));
  // The final epoch is reported with the fault-free test figures.
  BOOST_TEST(j["test_accuracy"] == reference["test_accuracy"]);

  // The directory now holds the job's end. Other settings that decide the
  // bits are refused, naming a file, and nothing is written.
  const auto files_before = list_snapshot_names(dir);
  for (const char* other : {"optimizer.lr=0.5", "job.seed=4"}) {
    auto args = all;
    args.insert(args.end() - 1, {"--set", other});
    auto r = run_troupe(args, 120);
    BOOST_TEST(r.code == 2, other << ": " << r.err);
    BOOST_TEST(r.err.find("was written by a different job") !=
                   std::string::npos,
               r.err);
  }
  BOOST_TEST(list_snapshot_names(dir) == files_before);
  // A testing switch does not change the bits: resumed, nothing is left
  // to train, the same parameters.
  {
    auto args = all;
    args.insert(args.end() - 1, {"--set", "testing.detached_compute=true"});
    auto r = run_troupe(args, 120);
    BOOST_REQUIRE_MESSAGE(r.code == 0, r.err);
    BOOST_TEST(json::parse(r.out)["params_digest"] ==
               reference["params_digest"]);
    BOOST_TEST(r.err.find("nothing left to train") != std::string::npos, r.err);
  }
  // More epochs go on from the end of the two trained.
  {
    auto args = all;
    args.insert(args.end() - 1, {"--set", "job.epochs=3"});
    auto r = run_troupe(args, 120);
    BOOST_REQUIRE_MESSAGE(r.code == 0, r.err);
    const auto more = json::parse(r.out);
    BOOST_TEST(more["resumed_from"] == reference["steps"]);
    BOOST_TEST(more["steps"].get<int>() ==
               3 * reference["steps"].get<int>() / 2);
    BOOST_TEST(more["params_digest"] != reference["params_digest"]);
    BOOST_TEST(more["history"].size() == 1u, more["history"].dump());
  }
}

BOOST_AUTO_TEST_SUITE_END()

// Watching and deploying across processes: node logs, addresses peers can
// dial, the Slurm recipe on loopback, and the live dashboard in headless
// Chromium. Every process started here is stopped here.
#include "tests/jobs.hpp"

#include <csignal>
#include <filesystem>
#include <set>
#include <unistd.h>

using namespace troupe::testing;

namespace {

// Headless Chromium loads `url`: the DOM after its scripts ran (dump_dom),
// or a screenshot written to `png`.
std::string chromium_load(const std::string& url, const std::string& png = "") {
  temp_dir profile;
  std::vector<std::string> args{"--headless=new",
                                "--no-sandbox",
                                "--disable-gpu",
                                "--hide-scrollbars",
                                "--user-data-dir=" + profile.path.string(),
                                "--window-size=1280,1250",
                                "--virtual-time-budget=3000"};
  args.push_back(png.empty() ? "--dump-dom" : "--screenshot=" + png);
  args.push_back(url);
  auto o = run_program_at("/usr/bin/chromium", args, 90);
  BOOST_TEST_INFO("chromium: " << o.err);
  BOOST_TEST(o.code == 0);
  return o.out;
}

// The text after `marker` up to the next space or newline in `text`.
std::string word_after(const std::string& text, const std::string& marker) {
  const auto at = text.find(marker);
  if (at == std::string::npos)
    return {};
  const auto from = at + marker.size();
  return text.substr(from, text.find_first_of(" \n", from) - from);
}

} // namespace

BOOST_AUTO_TEST_SUITE(watching)

// A node's structured log follows a job on it (spawns, a killed actor, the
// job's end); a node whose heartbeat settings differ from the pipeline's is
// named by the driver.
BOOST_AUTO_TEST_CASE(node_log_file_and_heartbeat_settings_that_differ) {
  csv_job job;
  temp_dir dir;
  const auto log = dir.file("node.jsonl");
  background a("troupe", {"node", "--listen", "127.0.0.1:0", "--name", "a",
                          "--threads", "1", "--log-file", log, "--heartbeat",
                          "0.25", "--heartbeat-timeout", "3"});
  const auto addr = a.read_line();
  BOOST_REQUIRE(!addr.empty());
  auto o = run_troupe({"run", job.pipeline, "--nodes", addr, "--json", "--set",
                       R"(chaos=[{kill="worker:1",at_step=30}])"},
                      180);
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE(o.code == 0);
  BOOST_TEST(o.err.find("warning: node a runs heartbeat 0.25 s, timeout 3 s; "
                        "the pipeline says supervision.heartbeat_s = 0.5, "
                        "heartbeat_timeout_s = 5") != std::string::npos);
  BOOST_TEST(a.stop(SIGTERM) == 0);
  std::vector<json> lines;
  std::istringstream in(slurp(log));
  for (std::string line; std::getline(in, line);)
    lines.push_back(json::parse(line));
  BOOST_REQUIRE(lines.size() >= 4u);
  std::string seen;
  for (const auto& j : lines) {
    BOOST_TEST(j["node"] == "a", j.dump());
    const std::string time = j["time"];
    BOOST_TEST((time.size() == 24u && time.back() == 'Z'), time);
    seen += j["event"].get<std::string>() + " " +
            (j["actor"].is_null() ? "-" : j["actor"].get<std::string>()) + "\n";
  }
  BOOST_TEST(lines.front()["event"] == "listening");
  BOOST_TEST(lines.back()["event"] == "shutdown");
  BOOST_TEST(lines.back()["detail"] == "SIGTERM");
  for (const char* want :
       {"job_started -\n", "spawned worker:1\n", "spawned param_shard:2\n",
        "spawned evaluator\n", "actor_exit worker:1\n", "job_stopped -\n"})
    BOOST_TEST(seen.find(want) != std::string::npos, want << " in\n" << seen);
  // worker:1 was spawned twice: the first died by the [[chaos]] entry.
  std::size_t spawns = 0;
  for (auto p = seen.find("spawned worker:1\n"); p != std::string::npos;
       p = seen.find("spawned worker:1\n", p + 1))
    ++spawns;
  BOOST_TEST(spawns == 2u);
  const auto bad = run_troupe({"node", "--log-file", dir.file("no/x.jsonl")});
  BOOST_TEST(bad.code == 2);
  BOOST_TEST(bad.err.find("--log-file " + dir.file("no/x.jsonl") +
                          ": cannot open for appending") != std::string::npos,
             bad.err);
}

// A node listening on every interface prints an address peers can dial.
BOOST_AUTO_TEST_CASE(a_node_on_every_interface_prints_a_dialable_address) {
  background n("troupe", {"node", "--listen", "0.0.0.0:0", "--insecure",
                          "--json", "--advertise", "127.0.0.1"});
  auto line = n.read_line();
  BOOST_REQUIRE(!line.empty());
  auto j = json::parse(line);
  BOOST_TEST(j["address"].get<std::string>().rfind("127.0.0.1:", 0) == 0u);
  BOOST_TEST(j["data_plane"].get<std::string>().rfind("127.0.0.1:", 0) == 0u);
  BOOST_TEST(n.stop(SIGTERM) == 0);
  background m("troupe", {"node", "--listen", "0.0.0.0:0", "--insecure"});
  line = m.read_line();
  BOOST_REQUIRE(!line.empty());
  BOOST_TEST(line.rfind("0.0.0.0:", 0) == std::string::npos, line);
  // Said on stderr just after the address on stdout.
  for (int i = 0; i < 500 && m.err().find("peers dial ") == std::string::npos;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  BOOST_TEST(m.err().find("peers dial ") != std::string::npos, m.err());
  BOOST_TEST(m.stop(SIGTERM) == 0);
}

// examples/deploy/slurm/troupe.sbatch with Slurm's variables for two hosts
// and stand-ins for srun and scontrol (tests/deploy): the hosts' nodes on
// loopback, the job on both, the nodes stopped at the end.
BOOST_AUTO_TEST_CASE(the_slurm_recipe_runs_a_job_on_every_allocated_host) {
  csv_job job;
  temp_dir submit;
  const std::string fakes = std::string(TROUPE_SOURCE_DIR) + "/tests/deploy";
  auto o = run_program_at(
      "/usr/bin/env",
      {"PATH=" + fakes + ":" + std::getenv("PATH"), "SLURM_JOB_ID=4242",
       "SLURM_JOB_NODELIST=host[1-2]", "FAKE_SLURM_HOSTS=host1 host2",
       "SLURM_SUBMIT_DIR=" + submit.path.string(),
       std::string("TROUPE=") + TROUPE_BINARY_DIR + "/bin/troupe",
       "TROUPE_LISTEN_HOST=127.0.0.1", "TROUPE_ADVERTISE=127.0.0.1", "bash",
       example("deploy/slurm/troupe.sbatch"), job.pipeline, "--json"},
      180);
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE(o.code == 0);
  const auto j = json::parse(o.out);
  BOOST_TEST(j["nodes"] == 2);
  std::set<std::string> used;
  for (const auto& [actor, node] : j["placement"].items())
    used.insert(node.get<std::string>());
  BOOST_TEST((used == std::set<std::string>{"host1", "host2"}));
  BOOST_TEST(o.err.find("troupe.sbatch: 2 node(s): 127.0.0.1:") !=
             std::string::npos);
  // The same bits as on one process.
  const auto local = run_json({job.pipeline});
  BOOST_TEST(j["params_digest"].get<std::string>() ==
             local["params_digest"].get<std::string>());
  // Each host's node logged the job and was stopped with the batch job.
  const auto dir = submit.file("troupe-4242");
  for (const char* host : {"host1", "host2"}) {
    const auto log = slurp(dir + "/" + host + ".log");
    BOOST_TEST(log.find("\"event\":\"spawned\"") != std::string::npos, host);
    BOOST_TEST(log.find("\"event\":\"shutdown\",\"detail\":\"SIGTERM\"") !=
                   std::string::npos,
               host);
  }
  BOOST_TEST(slurp(dir + "/metrics.jsonl").find("\"event\":\"end\"") !=
             std::string::npos);
  // Outside an allocation it says so.
  auto outside = run_program_at(
      "/usr/bin/env", {"-u", "SLURM_JOB_ID", "bash",
                       example("deploy/slurm/troupe.sbatch"), job.pipeline});
  BOOST_TEST(outside.code != 0);
  BOOST_TEST(outside.err.find("not in a Slurm job (SLURM_JOB_ID is not set)") !=
                 std::string::npos,
             outside.err);
}

// The live dashboard, loaded in headless Chromium during a run with a
// killed worker and a lost node, and the same page from troupe status.
BOOST_AUTO_TEST_CASE(the_dashboard_shows_a_run_and_its_faults_in_chromium) {
  BOOST_REQUIRE_MESSAGE(::access("/usr/bin/chromium", X_OK) == 0,
                        "chromium is not installed (tools/dev installs it)");
  csv_job job(R"([[chaos]]
kill = "worker:0"
at_step = 20
[[chaos]]
kill = "node:node2"
at_step = 50
)");
  background run("troupe",
                 {"run", job.pipeline, "--set", "cluster.local_nodes=3",
                  "--set", "supervision.snapshot_every=10", "--set",
                  "testing.slow_ms=60", "--set", "testing.slow_worker=1",
                  "--set", "job.epochs=4", "--dashboard", "127.0.0.1:0"});
  BOOST_REQUIRE(wait_for_text(run, "troupe: dashboard at ", 60) >= 0);
  const auto url = word_after(run.err(), "troupe: dashboard at ");
  BOOST_REQUIRE(url.rfind("http://127.0.0.1:", 0) == 0u);
  // After the node loss, once training went on.
  BOOST_REQUIRE_MESSAGE(wait_for_text(run, "the rollback recovered", 120) >= 0,
                        run.err());
  const auto dom = chromium_load(url);
  BOOST_TEST_INFO("DOM: " << dom);
  BOOST_TEST(
      dom.find("<span id=\"state\" class=\"training\">training</span>") !=
      std::string::npos);
  BOOST_TEST(dom.find("<div class=\"node lost\" data-node=\"node2\"><h3>node2"
                      "<span class=\"badge\">LOST</span>") !=
             std::string::npos);
  BOOST_TEST(dom.find("data-actor=\"worker:0\">worker:0 ↻") !=
             std::string::npos);
  BOOST_TEST(dom.find("fault injected: [[chaos]] kill worker:0 at step 20") !=
             std::string::npos);
  BOOST_TEST(dom.find("<tr class=\"node_lost\">") != std::string::npos);
  BOOST_TEST(dom.find("<tr class=\"recovered\">") != std::string::npos);
  // The charts were drawn (Chart.js sized its canvases).
  BOOST_TEST(dom.find("<canvas id=\"loss\" width=") != std::string::npos);
  // A screenshot of it is a real PNG.
  temp_dir shots;
  const auto png = shots.file("dashboard.png");
  chromium_load(url, png);
  const auto bytes = slurp(png);
  BOOST_TEST(bytes.rfind("\x89PNG", 0) == 0u);
  BOOST_TEST(bytes.size() > 20000u);
  if (const char* keep = std::getenv("TROUPE_KEEP_SCREENSHOTS"))
    std::filesystem::copy_file(
        png, std::string(keep) + "/dashboard-run.png",
        std::filesystem::copy_options::overwrite_existing);
  // Without the token the page loads but the job's state does not.
  const auto refused = chromium_load(url.substr(0, url.find('?')));
  BOOST_TEST(refused.find("class=\"unreachable\"") != std::string::npos);
  BOOST_TEST(refused.find("open the URL troupe printed") != std::string::npos);
  BOOST_TEST(refused.find("node2") == std::string::npos);

  // The same page for the running job from troupe status.
  const auto coordinator = word_after(run.err(), "coordinator at ");
  BOOST_REQUIRE(!coordinator.empty());
  background status("troupe", {"status", "--coordinator", coordinator,
                               "--dashboard", "127.0.0.1:0"});
  BOOST_REQUIRE(wait_for_text(status, "dashboard of ", 30) >= 0);
  const auto status_url = word_after(status.err(), " at http://");
  const auto seen = chromium_load("http://" + status_url);
  BOOST_TEST_INFO("DOM: " << seen);
  BOOST_TEST(seen.find("<div class=\"node lost\" data-node=\"node2\">") !=
             std::string::npos);
  BOOST_TEST(seen.find("fault injected: [[chaos]] kill worker:0 at step 20") !=
             std::string::npos);
  if (const char* keep = std::getenv("TROUPE_KEEP_SCREENSHOTS"))
    chromium_load("http://" + status_url,
                  std::string(keep) + "/dashboard-status.png");
  BOOST_TEST(status.stop(SIGTERM) == 0);
  BOOST_TEST(run.wait(120000) == 0);
}

BOOST_AUTO_TEST_SUITE_END()

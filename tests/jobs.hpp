#pragma once
// What the whole-program tests of jobs on node processes share: a small
// CSV job, running it for its JSON result, and watching processes and
// their output.
#include "tests/program.hpp"

#include "devices/random.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include <fmt/format.h>

namespace troupe::testing {

using json = nlohmann::json;
using troupe::data::testing::temp_dir;
using troupe::data::testing::write_text;

// A 3-class CSV problem small enough for many runs. Class 2 is half the
// rows (f0 + f1 <= f2), classes 0 and 1 a quarter each (by the sign of
// f3): a model that ignores f3 reaches at most 0.75, one that ignores f0,
// f1 or f2 about 0.8; trained ones reach 0.9 to 0.97, which the accuracy
// checks ask (0.85 of the small CNN, 0.88 of async runs through kills).
struct csv_job {
  temp_dir dir;
  std::string pipeline = dir.file("job.toml");
  explicit csv_job(const std::string& extra = "") {
    auto make = [](int rows, std::uint64_t seed) {
      std::string out;
      for (int i = 0; i < rows; ++i) {
        float f[4];
        for (int j = 0; j < 4; ++j)
          f[j] =
              2 * troupe::devices::unit_float(seed, std::uint64_t(i * 4 + j)) -
              1;
        const int label = f[0] + f[1] > f[2] ? (f[3] > 0 ? 0 : 1) : 2;
        out += fmt::format("{},{},{},{},{}\n", f[0], f[1], f[2], f[3], label);
      }
      return out;
    };
    write_text(dir.file("train.csv"), make(3000, 1));
    write_text(dir.file("test.csv"), make(500, 2));
    write_text(pipeline,
               fmt::format(R"([job]
seed = 3
epochs = 2
[data]
format = "csv"
classes = 3
train = "{}"
test = "{}"
batch = 48
shards = 3
[model]
layers = [ {{ type = "dense", units = 32 }}, {{ type = "relu" }}, {{ type = "dense", units = 3 }} ]
partitions = 3
[optimizer]
type = "adam"
lr = 0.01
[cluster]
workers = 3
threads = 1
{})",
                           dir.file("train.csv"), dir.file("test.csv"), extra));
  }
};

inline json run_json(const std::vector<std::string>& args, int seconds = 180) {
  std::vector<std::string> all{"run"};
  all.insert(all.end(), args.begin(), args.end());
  // Not quiet: if a run fails or hangs, its progress lines say where.
  all.push_back("--json");
  auto o = run_troupe(all, seconds);
  BOOST_TEST_INFO("stderr: " << o.err);
  BOOST_REQUIRE_EQUAL(o.code, 0);
  return json::parse(o.out);
}

// The same run with its [[chaos]] entries dropped: the reference.
inline json fault_free(std::vector<std::string> args) {
  args.insert(args.end(), {"--set", "chaos=[]"});
  return run_json(args);
}

// A job's arguments for 6 workers on 3 node processes, snapshots every 10
// steps.
inline std::vector<std::string> on_three_nodes(const csv_job& job) {
  return {job.pipeline,        "--set", "cluster.local_nodes=3",        "--set",
          "cluster.workers=6", "--set", "supervision.snapshot_every=10"};
}

// One kill of each role, at different steps (sync, async and ssp tests).
inline const std::string every_role_killed = R"([[chaos]]
kill = "worker:0"
at_step = 20
[[chaos]]
kill = "param_shard:1"
at_step = 47
[[chaos]]
kill = "data_shard:0"
at_step = 70
[[chaos]]
kill = "aggregator:0"
at_step = 95
)";

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t)
      .count();
}

// Waits until the job's stderr says `text`; seconds taken, or -1.
inline double wait_for_text(background& run, const std::string& text,
                            double limit_s = 30) {
  const auto t0 = std::chrono::steady_clock::now();
  while (seconds_since(t0) < limit_s) {
    if (run.err().find(text) != std::string::npos)
      return seconds_since(t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto stat = slurp(e.path().string() + "/stat");
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos)
      continue;
    std::istringstream rest(stat.substr(close_paren + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z')
      out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

inline bool alive(pid_t pid) {
  auto stat = slurp(fmt::format("/proc/{}/stat", pid));
  auto close_paren = stat.rfind(')');
  return close_paren != std::string::npos && stat[close_paren + 2] != 'Z';
}

} // namespace troupe::testing

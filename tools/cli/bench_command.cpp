// troupe bench allreduce: the runtime's gradient exchange (workers ->
// aggregators -> param shards -> workers) across N local node processes,
// without data or compute, timed per operation.
#include "tools/cli/commands.hpp"
#include "tools/cli/secret.hpp"

#include "actors/run.hpp"
#include "runtime/config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::cli {

namespace {

struct bench_cli {
  std::int64_t nodes = 2;
  std::string bytes = "1MiB,16MiB";
  std::int64_t iterations = 0; // 0: chosen by size
  bool json = false;
  std::string tls_dir;
};

std::int64_t parse_size(const std::string& text) {
  std::size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (...) {
    throw std::invalid_argument(
        fmt::format("--bytes: '{}' is not a size", text));
  }
  const auto unit = text.substr(pos);
  double mul = 1;
  if (unit.empty() || unit == "B")
    mul = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k")
    mul = 1024;
  else if (unit == "M" || unit == "MiB")
    mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB")
    mul = 1024.0 * 1024 * 1024;
  else
    throw std::invalid_argument(
        fmt::format("--bytes: unknown unit in '{}' (B, KiB, MiB, GiB)", text));
  const auto b = static_cast<std::int64_t>(v * mul);
  if (b < 8 || b > (std::int64_t{1} << 31))
    throw std::invalid_argument(
        fmt::format("--bytes: {} is out of range (8 B to 2 GiB)", text));
  return b;
}

std::string self_exe() {
  char buf[4096];
  const auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "troupe";
}

int run(const bench_cli& o) {
  std::vector<std::int64_t> sizes;
  try {
    std::stringstream ss(o.bytes);
    std::string item;
    while (std::getline(ss, item, ','))
      sizes.push_back(parse_size(item));
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "troupe bench: %s\n", e.what());
    return exit_bad_input;
  }
  std::shared_ptr<const runtime::tls_context> tls;
  try {
    tls = cli_tls(o.tls_dir);
  } catch (const runtime::tls_error& e) {
    std::fprintf(stderr, "troupe bench: %s\n", e.what());
    return exit_bad_input;
  }
  for (auto bytes : sizes) {
    actors::job_spec spec;
    spec.name = "allreduce";
    spec.exchange_only = true;
    spec.workers = o.nodes;
    spec.partitions = o.nodes;
    spec.shards = 0;
    spec.local_nodes = o.nodes;
    spec.batch = o.nodes;
    spec.threads = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::thread::hardware_concurrency()) /
               o.nodes);
    // One dense layer on one input: 2 * units parameters = bytes / 4.
    const auto units = std::max<std::int64_t>(1, bytes / 8);
    spec.layers = {{devices::nn::layer_kind::dense, units}};
    spec.inputs = 1;
    spec.outputs = units;
    // Two passes of the same length: the first (connections opened, buffers
    // first touched) is a warm-up and not timed, as the gloo baseline's
    // warm-up iterations are not.
    spec.epochs = 2;
    spec.steps_per_epoch =
        o.iterations > 0
            ? o.iterations
            : std::clamp<std::int64_t>((256 << 20) / bytes, 20, 2000);
    spec.optimizer.kind = devices::optimizer_kind::sgd;
    actors::cluster_options copt;
    copt.executable = self_exe();
    copt.coordinator_host.clear();
    copt.tls = tls;
    try {
      auto r = actors::run_job(spec, {}, copt);
      const auto& h = r.history;
      const double timed_s =
          h.size() == 2 ? h[1].wall_s - h[0].wall_s : r.train_s;
      const auto ops = h.size() == 2 ? spec.steps_per_epoch : r.steps;
      const double us = timed_s * 1e6 / static_cast<double>(ops);
      if (o.json) {
        nlohmann::ordered_json j{
            {"bench", "allreduce"}, {"bytes", units * 2 * 4},
            {"nodes", o.nodes},     {"tls", tls != nullptr},
            {"iterations", ops},    {"us_per_op", us}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%lld bytes over %lld node(s): %.1f us per op (%lld ops)\n",
                    static_cast<long long>(units * 8),
                    static_cast<long long>(o.nodes), us,
                    static_cast<long long>(ops));
      }
      std::fflush(stdout);
    } catch (const actors::cluster_unreachable& e) {
      std::fprintf(stderr, "troupe bench: cluster unreachable: %s\n", e.what());
      return exit_unreachable;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "troupe bench: %s\n", e.what());
      return exit_training_failed;
    }
  }
  return exit_ok;
}

} // namespace

void add_bench_command(CLI::App& app, int* code) {
  auto o = std::make_shared<bench_cli>();
  auto* bench = app.add_subcommand("bench", "Benchmarks of the runtime");
  bench->require_subcommand(1);
  auto* cmd = bench->add_subcommand(
      "allreduce", "Gradient exchange (workers -> aggregators -> param shards "
                   "-> workers) across N local node processes");
  cmd->add_option("--nodes", o->nodes, "Node processes (one worker each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  cmd->add_option("--bytes", o->bytes, "Gradient sizes, e.g. 1MiB,16MiB")
      ->capture_default_str();
  cmd->add_option("--iterations", o->iterations,
                  "Operations per size (default: by size)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--json", o->json, "One JSON object per size");
  add_tls_option(cmd, &o->tls_dir);
  cmd->callback([o, code] { *code = run(*o); });
}

} // namespace troupe::cli

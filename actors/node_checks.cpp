// What a node checks before it spawns a role for a peer (DESIGN §9): the
// arguments, the job spec again (sizes, indices, shapes, memory) and the
// data paths against --data-root. Errors name the cause, never data.
#include "actors/memory_plan.hpp"
#include "actors/messages.hpp"
#include "actors/roles.hpp"
#include "actors/stages.hpp"

#include "devices/nn/layers.hpp"

#include <atomic>
#include <cstdlib>
#include <limits.h>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

std::atomic<bool> serving{false};

// Whether `path` (resolved, links followed) lies under `root` (resolved).
bool under(const std::string& root, const std::string& path, std::string* why) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    *why = fmt::format("{} cannot be opened here", path);
    return false;
  }
  const std::string real = buf;
  if (::realpath(root.c_str(), buf) == nullptr) {
    *why = fmt::format("the node's --data-root {} does not exist", root);
    return false;
  }
  std::string r = buf;
  if (r.back() != '/')
    r += '/';
  if (real.compare(0, r.size(), r) == 0)
    return true;
  *why = fmt::format("{} is outside the node's --data-root {}", path, root);
  return false;
}

} // namespace

void set_serving_peers(bool on) {
  serving = on;
}

bool serving_peers() {
  return serving;
}

std::string redact_quoted(const std::string& text) {
  std::string out;
  bool inside = false;
  for (char c : text) {
    if (c == '"') {
      out += inside ? "\"" : "\"<withheld>";
      inside = !inside;
    } else if (!inside) {
      out += c;
    }
  }
  return out;
}

std::string check_spawn_request(const std::string& role_text,
                                const caf::message& args,
                                const std::string& data_root,
                                std::int64_t memory_bytes) {
  using i32 = std::int32_t;
  const auto kind = role_named(role_text);
  if (!kind)
    return fmt::format("'{}' is not a role of a job", role_text);
  const bool ok_types =
      (kind == role::evaluator && args.match_elements<job_spec>()) ||
      ((kind == role::data_shard || kind == role::stage ||
        kind == role::param_shard || kind == role::worker) &&
       args.match_elements<job_spec, i32>()) ||
      (kind == role::aggregator &&
       args.match_elements<job_spec, i32, i32, i32>());
  if (!ok_types)
    return fmt::format("the arguments for {} are not of its kind", role_text);
  const auto& s = args.get_as<job_spec>(0);
  const auto in = [](std::int64_t v, std::int64_t lo, std::int64_t hi) {
    return v >= lo && v <= hi;
  };
  if (!in(s.workers, 1, 4096) || !in(s.partitions, 1, 4096) ||
      !in(s.shards, 0, 4096) || !in(s.batch, 1, 1 << 24) ||
      s.batch % s.workers != 0 || !in(s.epochs, 0, 1 << 20) ||
      !in(s.snapshot_every, 1, 1 << 30) ||
      s.worker_devices.size() > static_cast<std::size_t>(s.workers) ||
      s.layers.size() > 1024 || s.stages.size() > 8)
    return "the job spec's sizes are out of range";
  if (!s.exchange_only) {
    try {
      devices::nn::infer_shapes(s.input_shape, s.layers);
    } catch (const std::exception& e) {
      return fmt::format("the job spec's model does not hold: {}", e.what());
    }
  }
  if (args.size() > 1) {
    const auto index = args.get_as<i32>(1);
    const auto bound = kind == role::data_shard ? s.shards
                       : kind == role::stage
                           ? s.shards * std::int64_t(s.stages.size())
                       : kind == role::param_shard ? s.partitions
                                                   : s.workers;
    if (index < 0 || index >= bound)
      return fmt::format("{} index {} is outside the job's 0..{}", role_text,
                         index, bound - 1);
    if (kind == role::aggregator) {
      const auto lo = args.get_as<i32>(2), hi = args.get_as<i32>(3);
      if (lo < 0 || hi > s.workers || lo >= hi)
        return fmt::format("aggregator ranks [{}, {}) are outside the job's "
                           "{} workers",
                           lo, hi, s.workers);
    }
  }
  if (kind == role::stage) {
    const auto& type =
        s.stages[static_cast<std::size_t>(args.get_as<i32>(1) / s.shards)].type;
    if (!stages::has_data_stage(type))
      return fmt::format("data stage \"{}\" is not registered on this node "
                         "(start `troupe node` with --plugin LIB.so, the "
                         "library that registers it)",
                         type);
  }
  if (memory_bytes > 0) {
    const auto r = estimate_roles(s);
    const double need = kind == role::worker        ? r.worker
                        : kind == role::param_shard ? r.param_shard
                        : kind == role::aggregator  ? r.aggregator
                                                    : 0;
    if (need > double(memory_bytes))
      return fmt::format("a {} of this job would need about {}; the node has "
                         "{}",
                         role_text, human_bytes(need),
                         human_bytes(double(memory_bytes)));
  }
  if (!data_root.empty() &&
      (kind == role::data_shard || kind == role::evaluator)) {
    std::string why;
    for (const auto& f : kind == role::data_shard ? s.train : s.test)
      if (!under(data_root, f, &why))
        return why;
  }
  return {};
}

} // namespace troupe::actors

#include "actors/placement.hpp"

#include "runtime/config.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

bool has_device(const node_slot& n, const std::string& kind) {
  if (kind == "any")
    return !n.devices.empty();
  return std::any_of(n.devices.begin(), n.devices.end(),
                     [&](const std::string& d) {
                       return d == kind || d.rfind(kind + ":", 0) == 0;
                     });
}

std::int32_t node_by_name(const std::vector<node_slot>& nodes,
                          const std::string& role, const std::string& name) {
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == name)
      return static_cast<std::int32_t>(i);
  std::vector<std::string> names;
  for (const auto& n : nodes)
    names.push_back(n.name);
  throw runtime::config_error(
      fmt::format("placement.{}: no node named \"{}\" (nodes: {})", role, name,
                  fmt::join(names, ", ")));
}

// Explicit placement of `count` actors of a role: names cycle.
bool explicit_nodes(const job_spec& spec, const std::vector<node_slot>& nodes,
                    const std::string& role, std::int64_t count,
                    std::vector<std::int32_t>& out) {
  auto it = spec.placement.find(role);
  if (it == spec.placement.end())
    return false;
  out.clear();
  for (std::int64_t i = 0; i < count; ++i)
    out.push_back(node_by_name(
        nodes, role,
        it->second[static_cast<std::size_t>(i) % it->second.size()]));
  return true;
}

} // namespace

placement_plan plan_placement(const job_spec& spec,
                              const std::vector<node_slot>& nodes) {
  if (nodes.empty())
    throw runtime::config_error("no nodes to place the job on");
  const auto n = static_cast<std::int64_t>(nodes.size());
  placement_plan p;
  // Workers: contiguous blocks over the nodes that have the device.
  std::vector<std::int32_t> capable;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (has_device(nodes[i], spec.device))
      capable.push_back(static_cast<std::int32_t>(i));
  if (capable.empty()) {
    std::vector<std::string> offers;
    for (const auto& node : nodes)
      offers.push_back(
          fmt::format("{}: {}", node.name, fmt::join(node.devices, ",")));
    throw runtime::config_error(
        fmt::format("cluster.device: no node has a \"{}\" device (nodes "
                    "offer {})",
                    spec.device, fmt::join(offers, "; ")));
  }
  if (!explicit_nodes(spec, nodes, "worker", spec.workers, p.workers)) {
    const auto c = static_cast<std::int64_t>(capable.size());
    for (std::int64_t r = 0; r < spec.workers; ++r)
      p.workers.push_back(
          capable[static_cast<std::size_t>(r * c / spec.workers)]);
  }
  for (std::int64_t r = 0; r < spec.workers; ++r) {
    const auto& node =
        nodes[static_cast<std::size_t>(p.workers[static_cast<std::size_t>(r)])];
    if (!has_device(node, spec.device))
      throw runtime::config_error(fmt::format(
          "placement.worker: node \"{}\" has no \"{}\" device for worker {}",
          node.name, spec.device, r));
  }
  // Devices: cluster.device "cuda" takes a GPU, "any" a GPU where the node
  // has one; GPUs of a node are dealt out in rank order.
  std::vector<std::size_t> gpu_turn(nodes.size(), 0);
  for (std::int64_t r = 0; r < spec.workers; ++r) {
    const auto at =
        static_cast<std::size_t>(p.workers[static_cast<std::size_t>(r)]);
    std::vector<std::string> gpus;
    for (const auto& d : nodes[at].devices)
      if (d.rfind("cuda:", 0) == 0)
        gpus.push_back(d);
    if (spec.device == "cpu" || gpus.empty())
      p.worker_devices.emplace_back("cpu");
    else
      p.worker_devices.push_back(gpus[gpu_turn[at]++ % gpus.size()]);
  }
  // One aggregator per maximal run of consecutive ranks on one node.
  for (std::int64_t r = 0; r < spec.workers; ++r) {
    const auto node = p.workers[static_cast<std::size_t>(r)];
    if (p.aggregators.empty() || p.aggregators.back().node != node ||
        p.aggregators.back().hi != r)
      p.aggregators.push_back(
          {node, static_cast<std::int32_t>(r), static_cast<std::int32_t>(r)});
    p.aggregators.back().hi = static_cast<std::int32_t>(r + 1);
    p.aggregator_of_worker.push_back(
        static_cast<std::int32_t>(p.aggregators.size() - 1));
  }
  // Data shard s serves workers s, s + shards, ...: it sits with worker s.
  if (!explicit_nodes(spec, nodes, "data_shard", spec.shards, p.data_shards))
    for (std::int64_t s = 0; s < spec.shards; ++s)
      p.data_shards.push_back(p.workers[static_cast<std::size_t>(s)]);
  for (std::int64_t r = 0; r < spec.workers; ++r)
    p.data_shard_of_worker.push_back(
        spec.shards > 0 ? static_cast<std::int32_t>(r % spec.shards) : -1);
  // A data stage sits with its data shard (the batch crosses no network
  // twice), unless [placement] says otherwise.
  const auto stage_count =
      static_cast<std::int64_t>(spec.stages.size()) * spec.shards;
  if (!explicit_nodes(spec, nodes, "stage", stage_count, p.stages))
    for (std::int64_t i = 0; i < stage_count; ++i)
      p.stages.push_back(
          p.data_shards[static_cast<std::size_t>(i % spec.shards)]);
  // Parameter shards round-robin, so parameters split across all nodes.
  if (!explicit_nodes(spec, nodes, "param_shard", spec.partitions,
                      p.param_shards))
    for (std::int64_t s = 0; s < spec.partitions; ++s)
      p.param_shards.push_back(static_cast<std::int32_t>(s % n));
  std::vector<std::int32_t> ev;
  if (explicit_nodes(spec, nodes, "evaluator", 1, ev))
    p.evaluator = ev.front();
  else
    p.evaluator = static_cast<std::int32_t>(n - 1);
  return p;
}

new_home rehome(const std::string& role, std::int32_t index,
                const job_spec& spec, const std::vector<node_slot>& nodes,
                const std::set<std::string>& lost,
                const std::map<std::string, std::string>& placement) {
  const auto& devices = spec.worker_devices;
  const bool gpu_worker = role == "worker" && index >= 0 &&
                          static_cast<std::size_t>(index) < devices.size() &&
                          devices[static_cast<std::size_t>(index)] != "cpu";
  bool gpu_left = false;
  for (const auto& n : nodes)
    gpu_left = gpu_left || (lost.count(n.name) == 0 && has_device(n, "cuda"));
  const bool need_gpu = gpu_worker && (gpu_left || spec.device == "cuda");
  new_home out;
  std::size_t best_load = 0;
  for (std::size_t n = 0; n < nodes.size(); ++n) {
    if (lost.count(nodes[n].name) > 0 ||
        (need_gpu && !has_device(nodes[n], "cuda")))
      continue;
    std::size_t load = 0;
    for (const auto& [actor, where] : placement)
      load += where == nodes[n].name ? 1 : 0;
    if (!out.node || load < best_load) {
      out.node = n;
      best_load = load;
    }
  }
  if (!out.node) {
    std::vector<std::string> gone(lost.begin(), lost.end());
    out.why = need_gpu
                  ? fmt::format("no surviving node offers a GPU (lost: {})",
                                fmt::join(gone, ", "))
                  : fmt::format("every node of the job was lost ({})",
                                fmt::join(gone, ", "));
    return out;
  }
  if (!gpu_worker)
    return out;
  // The GPU of that node with the fewest of the other workers, else its CPU.
  const auto& home = nodes[*out.node];
  out.device = "cpu";
  std::size_t fewest = 0;
  for (const auto& id : home.devices) {
    if (id.rfind("cuda:", 0) != 0)
      continue;
    std::size_t users = 0;
    for (std::size_t r = 0; r < devices.size(); ++r) {
      if (static_cast<std::int32_t>(r) == index || devices[r] != id)
        continue;
      const auto it = placement.find(fmt::format("worker:{}", r));
      users += it != placement.end() && it->second == home.name ? 1 : 0;
    }
    if (out.device == "cpu" || users < fewest) {
      out.device = id;
      fewest = users;
    }
  }
  return out;
}

} // namespace troupe::actors

#include "actors/memory_plan.hpp"

#include "devices/nn/layers.hpp"
#include "runtime/config.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace troupe::actors {

namespace nn = devices::nn;

std::string human_bytes(double bytes) {
  if (bytes >= double(1 << 30))
    return fmt::format("{:.1f} GiB", bytes / double(1 << 30));
  return fmt::format("{:.1f} MiB", bytes / double(1 << 20));
}

role_memory estimate_roles(const job_spec& spec) {
  role_memory r;
  const double f = sizeof(float);
  double params = 0, activations = 0;
  if (!spec.exchange_only && !spec.layers.empty()) {
    params = static_cast<double>(
        nn::param_count(nn::param_layout(spec.input_shape, spec.layers)));
    // Each layer's output for a batch, kept for the backward pass, and its
    // gradient.
    for (const auto& s : nn::infer_shapes(spec.input_shape, spec.layers))
      activations += 2 * static_cast<double>(spec.batch) *
                     static_cast<double>(devices::numel_of(s));
  }
  r.params = static_cast<std::int64_t>(params);
  const double p_bytes = params * f;
  // The worker's replay window (worker.cpp): up to three snapshot intervals
  // of gradients, within 256 MiB.
  const double window =
      std::max(1.0, std::min({3.0 * double(spec.snapshot_every) + 4,
                              double(spec.total_steps()) + 1,
                              double(256 << 20) / std::max(1.0, p_bytes)}));
  r.worker = p_bytes * (2 + window) + activations * f;
  const double shard =
      p_bytes / double(std::max<std::int64_t>(1, spec.partitions));
  r.param_shard =
      shard * (3 + devices::optimizer_state_count(spec.optimizer.kind));
  r.aggregator = p_bytes * 2;
  return r;
}

double largest_message(const job_spec& spec) {
  const auto r = estimate_roles(spec);
  const double f = sizeof(float);
  const double shard_state =
      double(r.params) / double(std::max<std::int64_t>(1, spec.partitions)) *
      (1 + devices::optimizer_state_count(spec.optimizer.kind)) * f;
  double sample = 1;
  for (auto d : spec.input_shape)
    sample *= double(d);
  const double batch = double(spec.batch) * (sample + 16) * f;
  return std::max({shard_state, batch, double(4 << 20)}) * 1.25 +
         double(1 << 20);
}

double estimate_node(const job_spec& spec, const placement_plan& plan,
                     std::int32_t node, double train_bytes, double test_bytes) {
  const auto r = estimate_roles(spec);
  const auto count = [&](const std::vector<std::int32_t>& where) {
    return static_cast<double>(std::count(where.begin(), where.end(), node));
  };
  double bytes =
      count(plan.workers) * r.worker + count(plan.param_shards) * r.param_shard;
  for (const auto& a : plan.aggregators)
    if (a.node == node)
      bytes += r.aggregator;
  if (count(plan.data_shards) > 0)
    bytes += train_bytes;
  if (plan.evaluator == node)
    bytes += test_bytes + r.params * double(sizeof(float));
  return bytes;
}

void check_memory_fit(const job_spec& spec, const placement_plan& plan,
                      const std::vector<std::string>& node_names,
                      const std::vector<std::int64_t>& memory,
                      double train_bytes, double test_bytes) {
  const auto r = estimate_roles(spec);
  for (std::size_t i = 0; i < node_names.size() && i < memory.size(); ++i) {
    if (memory[i] <= 0)
      continue;
    const auto node = static_cast<std::int32_t>(i);
    const double need =
        estimate_node(spec, plan, node, train_bytes, test_bytes);
    if (need <= double(memory[i]))
      continue;
    const auto n = [&](const std::vector<std::int32_t>& where) {
      return std::count(where.begin(), where.end(), node);
    };
    throw runtime::config_error(fmt::format(
        "the job cannot fit: {} would need about {} but has {} "
        "(model: {} parameters; {} worker(s) x {}, {} param shard(s) x {}, "
        "data {})",
        node_names[i], human_bytes(need), human_bytes(double(memory[i])),
        r.params, n(plan.workers), human_bytes(r.worker), n(plan.param_shards),
        human_bytes(r.param_shard),
        human_bytes(n(plan.data_shards) > 0 ? train_bytes : 0)));
  }
}

} // namespace troupe::actors

#pragma once
/// \file Where each actor of a job runs. A pure function of the spec and the
/// nodes, so it can be tested without a cluster.
#include "actors/job_spec.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::actors {

/// What placement needs to know of a node.
struct node_slot {
  std::string name;
  std::vector<std::string> devices;
};

/// Node index of every actor. Workers sit on nodes in contiguous blocks of
/// ranks (so whole subtrees of the reduction tree are summed on one node);
/// each node with workers gets an aggregator for its ranks [lo, hi).
struct placement_plan {
  std::vector<std::int32_t> data_shards;
  /// stage:(position * shards + shard), by that index.
  std::vector<std::int32_t> stages;
  std::vector<std::int32_t> param_shards;
  std::vector<std::int32_t> workers;
  /// Per worker rank: "cpu" or the GPU it computes on ("cuda:N" of its
  /// node); a node's GPU workers take its GPUs in turn.
  std::vector<std::string> worker_devices;
  std::int32_t evaluator = 0;
  /// One aggregator per node that runs workers.
  struct aggregator_slot {
    std::int32_t node = 0;
    std::int32_t lo = 0, hi = 0; ///< worker ranks
  };
  std::vector<aggregator_slot> aggregators;
  std::vector<std::int32_t> aggregator_of_worker;
  std::vector<std::int32_t> data_shard_of_worker;
};

/// Spreads the roles over the nodes (the default) or follows [placement].
/// Honours cluster.device: workers only go to nodes with such a device.
/// Throws runtime::config_error for an unknown node name or impossible
/// constraint, naming the key.
placement_plan plan_placement(const job_spec& spec,
                              const std::vector<node_slot>& nodes);

/// Where an actor goes when its node is lost.
struct new_home {
  std::optional<std::size_t> node; ///< index into the nodes; none: nowhere
  std::string device; ///< a worker's device there ("cpu", "cuda:N")
  std::string why;    ///< when nowhere
};

/// The surviving node with the fewest of the job's actors (`placement`:
/// actor -> node name), the first of those. A GPU worker (its entry in
/// spec.worker_devices is not "cpu") goes to a node that offers a GPU, and
/// takes the GPU there with the fewest of the job's workers; with
/// cluster.device "any" and no GPU left, to any node, on its CPU.
new_home rehome(const std::string& role, std::int32_t index,
                const job_spec& spec, const std::vector<node_slot>& nodes,
                const std::set<std::string>& lost,
                const std::map<std::string, std::string>& placement);

} // namespace troupe::actors

#pragma once
/// \file What a job's actors will hold in memory, per node, so that a job
/// that cannot fit is refused at start with the figures instead of growing
/// a node until the kernel kills it. CAF-free.
#include "actors/job_spec.hpp"
#include "actors/placement.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace troupe::actors {

/// Bytes each role instance holds, from the spec alone (float32 tensors;
/// the larger buffers only, so a lower bound within a few MiB).
struct role_memory {
  std::int64_t params = 0; ///< parameter count
  double worker = 0;       ///< parameters, gradient, replay window,
                           ///< activations of a batch
  double param_shard = 0;  ///< one shard: values, sums, optimizer
                           ///< state, snapshots in flight
  double aggregator = 0;   ///< partial sums of a step
};
role_memory estimate_roles(const job_spec& spec);

/// A node's share: its actors' bytes plus the data sets its data shards and
/// evaluator hold (train_bytes / test_bytes, shared in a process).
double estimate_node(const job_spec& spec, const placement_plan& plan,
                     std::int32_t node, double train_bytes, double test_bytes);

/// Throws runtime::config_error (exit 2) naming (as `where` says it: "node
/// n0", "this machine") the first node whose
/// estimate exceeds its memory: the estimate, its parts and the memory the
/// node has. memory[i] <= 0: unknown, not checked.
void check_memory_fit(const job_spec& spec, const placement_plan& plan,
                      const std::vector<std::string>& where,
                      const std::vector<std::int64_t>& memory,
                      double train_bytes, double test_bytes);

/// The largest single message of the job between processes, with room to
/// spare: a param shard's whole state (values and optimizer state, in a
/// snapshot or a restore), a worker's batch, a 4 MiB slice.
double largest_message(const job_spec& spec);

/// "1.5 GiB", "300.0 MiB".
std::string human_bytes(double bytes);

} // namespace troupe::actors

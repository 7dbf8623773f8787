#pragma once
/// \file The training mode (job.mode) as one policy, asked by every role:
/// how gradients become parameter versions, which step a version or an
/// answer is for, when a worker may go on, and where a replay begins. The
/// roles move tensors; this decides. No CAF.
///
/// - sync: the shards sum every worker's gradient of a step (each scaled
///   by 1 / global batch) and apply one optimizer step: one version per
///   step, the same bits however the job is placed.
/// - async: each worker's gradient (scaled by 1 / local batch) is applied
///   alone as it comes, counted in a ledger per worker; the worker is
///   answered at once with the parameters for its next step.
/// - ssp: as async, but a worker is answered only while it is at most
///   job.staleness steps ahead of the slowest.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::actors {

struct job_spec;

class update_rule {
public:
  enum class mode : std::uint8_t { sync, async, ssp };

  update_rule() = default; // sync, one worker
  explicit update_rule(const job_spec& spec);

  mode which() const { return mode_; }
  /// sync: a step's gradients are summed over the workers; else each is
  /// applied alone and counted in a per-worker ledger.
  bool sums_workers() const { return mode_ == mode::sync; }
  /// ssp: a worker's answer may wait for the slowest worker.
  bool holds_workers() const { return mode_ == mode::ssp; }

  /// Optimizer versions in an epoch: a step's (sync), or one per worker's
  /// gradient.
  std::int64_t versions_per_epoch() const;
  /// The global step (1-based) version `v` belongs to: its learning rate's
  /// step. async/ssp: versions 1..workers are step 1, and so on.
  std::int64_t step_of_version(std::int64_t v) const;
  /// What a worker scales the gradient of its summed per-sample loss by:
  /// 1 / global batch where the shards add the workers up, 1 / local batch
  /// where each gradient is applied alone.
  float grad_scale() const;
  /// batch_norm's share of the batch statistics it sends (1 / workers
  /// where the shards sum the workers' shares).
  float stat_share() const;
  /// The step of a worker's that parameters sent to it are for: their
  /// version (sync), or the answer's tag (async/ssp).
  std::int64_t step_of(std::int64_t version, std::int64_t tag) const;
  /// Whether a worker that has done `clock` steps may start its next one
  /// while the slowest has done `slowest`.
  bool may_go_on(std::int64_t clock, std::int64_t slowest) const;
  /// Where worker `r`'s replay to a param shard restored to `version`
  /// begins: that step (sync), or the first of its gradients the
  /// snapshot's ledger (each worker's last applied sequence number) lacks
  /// (0 when the ledger is not one of `workers`).
  std::int64_t replay_from(std::int64_t version,
                           const std::vector<std::int64_t>& ledger,
                           std::size_t r, std::size_t workers) const;

private:
  mode mode_ = mode::sync;
  std::int64_t workers_ = 1;
  std::int64_t batch_ = 1;
  std::int64_t staleness_ = 0;
  std::int64_t steps_per_epoch_ = 0;
};

} // namespace troupe::actors

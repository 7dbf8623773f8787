#pragma once
/// \file What a job's coordinator knows of the param shards' snapshots on
/// disk: the newest version every shard has written (the checkpoint that
/// a rollback or --resume goes back to), each shard's two newest (a
/// corrupt newest one falls back to the other), and so from which step the
/// workers must keep their gradients for a replay. A plain class, no CAF:
/// the coordinator sends what it answers.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace troupe::actors {

class checkpoint_ledger {
public:
  /// For `shards` param shards and `workers` workers; `synchronous`: one
  /// optimizer version per step (sync), else one per gradient (async/ssp,
  /// where each snapshot carries a ledger of what it applied).
  explicit checkpoint_ledger(std::int32_t shards = 0, std::int32_t workers = 0,
                             bool synchronous = true);

  /// async/ssp: shard's snapshot of `version` has applied worker w's
  /// gradients up to applied[w]. Kept until both of the shard's kept
  /// snapshots are newer.
  void add_ledger(std::int32_t shard, std::int64_t version,
                  std::vector<std::int64_t> applied);

  /// What the workers may drop, as it advances: sync, every worker keeps
  /// its gradients from step `all` on; async/ssp, worker w keeps them from
  /// its gradient `by_worker[k].second` on (w = by_worker[k].first).
  struct prune {
    std::optional<std::int64_t> all;
    std::vector<std::pair<std::size_t, std::int64_t>> by_worker;
  };

  /// Shard `shard` has `version` on disk. Out-of-range shards are ignored.
  prune durable(std::int32_t shard, std::int64_t version);

  /// The newest version every shard has on disk; -1 when there is none.
  std::int64_t checkpoint() const { return checkpoint_; }

  /// Whether every shard p has a version >= versions[p] on disk (a
  /// negative or missing entry: not yet asked, so false).
  bool written(const std::vector<std::int64_t>& versions) const;

  /// The oldest version some shard still keeps (0 while one keeps none):
  /// what a replay may reach back to.
  std::int64_t oldest_kept() const;

  /// The job went back to `version` (a rollback): the shards snapshot anew
  /// from there, and the workers keep their gradients from it on.
  void restart_from(std::int64_t version);

  /// --resume: `version` is on disk for every shard.
  void resumed(std::int64_t version);

private:
  std::int32_t shards_;
  bool synchronous_;
  std::vector<std::vector<std::int64_t>> kept_; // by shard: two newest
  std::map<std::int64_t, std::set<std::int32_t>> complete_; // by version
  std::int64_t checkpoint_ = -1;
  std::int64_t pruned_ = 0;                    // sync
  std::vector<std::int64_t> pruned_by_worker_; // async/ssp
  std::map<std::pair<std::int32_t, std::int64_t>, std::vector<std::int64_t>>
      ledgers_;
};

} // namespace troupe::actors

#pragma once
/// \file Which samples make up the batch of (epoch, step, worker): a pure
/// function of the seed, so a restarted data shard serves exactly what the
/// lost one would have.
#include <cstdint>
#include <string>
#include <vector>

namespace troupe::data {

/// How a dataset of `samples` rows is split over shards and workers. Shard s
/// owns the contiguous rows [begin(s), end(s)); worker r draws from shard
/// r % shards. Each step, every worker takes local_batch rows.
class batch_plan {
public:
  /// Throws std::invalid_argument with a message naming the key at fault.
  batch_plan(std::int64_t samples, std::int64_t shards, std::int64_t workers,
             std::int64_t global_batch, std::uint64_t seed);

  std::int64_t shards() const { return shards_; }
  std::int64_t workers() const { return workers_; }
  std::int64_t global_batch() const { return global_batch_; }
  std::int64_t local_batch() const { return global_batch_ / workers_; }
  /// Steps per epoch: every worker gets a full batch each step.
  std::int64_t steps_per_epoch() const { return steps_; }
  std::int64_t shard_of(std::int64_t worker) const { return worker % shards_; }
  std::int64_t begin(std::int64_t shard) const;
  std::int64_t end(std::int64_t shard) const;
  /// Workers drawing from a shard.
  std::int64_t workers_on(std::int64_t shard) const;

  /// The rows of the batch for (epoch, step, worker), in order.
  std::vector<std::int64_t> rows(std::int64_t epoch, std::int64_t step,
                                 std::int64_t worker) const;

  /// Where the batch of (step, worker) starts within its shard's epoch
  /// permutation; it covers local_batch() entries from there.
  std::int64_t position(std::int64_t step, std::int64_t worker) const;

  /// The permutation of a shard's rows for an epoch (relative indices).
  std::vector<std::int64_t> permutation(std::int64_t shard,
                                        std::int64_t epoch) const;

private:
  std::int64_t samples_;
  std::int64_t shards_;
  std::int64_t workers_;
  std::int64_t global_batch_;
  std::uint64_t seed_;
  std::int64_t steps_ = 0;
};

} // namespace troupe::data

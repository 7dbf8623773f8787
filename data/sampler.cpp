#include "data/sampler.hpp"

#include "devices/random.hpp"

#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

namespace troupe::data {

batch_plan::batch_plan(std::int64_t samples, std::int64_t shards,
                       std::int64_t workers, std::int64_t global_batch,
                       std::uint64_t seed)
  : samples_(samples)
  , shards_(shards)
  , workers_(workers)
  , global_batch_(global_batch)
  , seed_(seed) {
  if (workers < 1)
    throw std::invalid_argument("cluster.workers must be at least 1");
  if (shards < 1)
    throw std::invalid_argument("data.shards must be at least 1");
  if (shards > workers)
    throw std::invalid_argument(fmt::format(
        "data.shards = {} exceeds cluster.workers = {}: every data shard "
        "needs a worker",
        shards, workers));
  if (global_batch < 1 || global_batch % workers != 0)
    throw std::invalid_argument(fmt::format(
        "data.batch = {} must be a positive multiple of cluster.workers = {}",
        global_batch, workers));
  steps_ = -1;
  for (std::int64_t s = 0; s < shards_; ++s) {
    const auto rows = end(s) - begin(s);
    const auto per_step = workers_on(s) * local_batch();
    const auto steps = rows / per_step;
    steps_ = steps_ < 0 ? steps : std::min(steps_, steps);
  }
  if (steps_ < 1)
    throw std::invalid_argument(fmt::format(
        "data.batch = {} is too large: a data shard of {} rows cannot fill one "
        "step",
        global_batch, samples / shards));
}

std::int64_t batch_plan::begin(std::int64_t shard) const {
  return samples_ * shard / shards_;
}
std::int64_t batch_plan::end(std::int64_t shard) const {
  return samples_ * (shard + 1) / shards_;
}
std::int64_t batch_plan::workers_on(std::int64_t shard) const {
  return (workers_ - shard + shards_ - 1) / shards_;
}

std::vector<std::int64_t> batch_plan::permutation(std::int64_t shard,
                                                  std::int64_t epoch) const {
  const auto n = end(shard) - begin(shard);
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  // Fisher-Yates driven by counter-based bits: one stream per (shard, epoch).
  const auto stream = (static_cast<std::uint64_t>(shard) << 32) ^
                      static_cast<std::uint64_t>(epoch);
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto bits = devices::random_bits(seed_, static_cast<std::uint64_t>(i),
                                           stream + 0x5eed);
    const auto j = static_cast<std::int64_t>(
        devices::uniform_below(bits, static_cast<std::uint64_t>(i + 1)));
    std::swap(perm[static_cast<std::size_t>(i)],
              perm[static_cast<std::size_t>(j)]);
  }
  return perm;
}

std::int64_t batch_plan::position(std::int64_t step,
                                  std::int64_t worker) const {
  const auto j = worker / shards_; // this worker's place among its shard's
  return (step * workers_on(shard_of(worker)) + j) * local_batch();
}

std::vector<std::int64_t> batch_plan::rows(std::int64_t epoch,
                                           std::int64_t step,
                                           std::int64_t worker) const {
  const auto s = shard_of(worker);
  const auto perm = permutation(s, epoch);
  const auto b = local_batch();
  const auto first = position(step, worker);
  std::vector<std::int64_t> out(static_cast<std::size_t>(b));
  for (std::int64_t i = 0; i < b; ++i)
    out[static_cast<std::size_t>(i)] =
        begin(s) + perm[static_cast<std::size_t>(first + i)];
  return out;
}

} // namespace troupe::data

#include "actors/checkpoint_ledger.hpp"

#include <algorithm>
#include <limits>

namespace troupe::actors {

checkpoint_ledger::checkpoint_ledger(std::int32_t shards, std::int32_t workers,
                                     bool synchronous)
  : shards_(std::max<std::int32_t>(0, shards))
  , synchronous_(synchronous)
  , kept_(static_cast<std::size_t>(shards_))
  , pruned_by_worker_(
        static_cast<std::size_t>(std::max<std::int32_t>(0, workers)), 0) {}

void checkpoint_ledger::add_ledger(std::int32_t shard, std::int64_t version,
                                   std::vector<std::int64_t> applied) {
  if (!synchronous_)
    ledgers_[{shard, version}] = std::move(applied);
}

checkpoint_ledger::prune checkpoint_ledger::durable(std::int32_t shard,
                                                    std::int64_t version) {
  prune out;
  if (shard < 0 || shard >= shards_)
    return out;
  auto& have = complete_[version];
  have.insert(shard);
  if (static_cast<std::int32_t>(have.size()) == shards_) {
    checkpoint_ = std::max(checkpoint_, version);
    complete_.erase(complete_.begin(), complete_.upper_bound(version));
  }
  auto& d = kept_[static_cast<std::size_t>(shard)];
  d.push_back(version);
  if (d.size() > 2)
    d.erase(d.begin());
  if (synchronous_) {
    // Every worker keeps its gradients from the older of the two newest
    // snapshots of the shard that lags most.
    std::int64_t keep = std::numeric_limits<std::int64_t>::max();
    for (const auto& v : kept_)
      keep = std::min(keep, v.size() < 2 ? std::int64_t{0} : v.front());
    if (keep > pruned_) {
      pruned_ = keep;
      out.all = keep;
    }
    return out;
  }
  // Each worker keeps its gradients from the first one the older kept
  // snapshot of some shard lacks (all of them while a shard has fewer
  // than two, or its older one's ledger is missing).
  const auto workers = pruned_by_worker_.size();
  std::vector<std::int64_t> keep(workers,
                                 std::numeric_limits<std::int64_t>::max());
  for (std::size_t p = 0; p < kept_.size(); ++p) {
    const auto& v = kept_[p];
    auto l = v.size() < 2
                 ? ledgers_.end()
                 : ledgers_.find({static_cast<std::int32_t>(p), v.front()});
    for (std::size_t w = 0; w < workers; ++w)
      keep[w] =
          std::min(keep[w], l == ledgers_.end() || l->second.size() != workers
                                ? std::int64_t{0}
                                : l->second[w] + 1);
  }
  for (std::size_t w = 0; w < workers; ++w)
    if (keep[w] > pruned_by_worker_[w]) {
      pruned_by_worker_[w] = keep[w];
      out.by_worker.emplace_back(w, keep[w]);
    }
  for (auto it = ledgers_.begin(); it != ledgers_.end();) {
    const auto s = it->first.first;
    const bool gone =
        s >= 0 && s < shards_ &&
        kept_[static_cast<std::size_t>(s)].size() == 2 &&
        it->first.second < kept_[static_cast<std::size_t>(s)].front();
    it = gone ? ledgers_.erase(it) : std::next(it);
  }
  return out;
}

bool checkpoint_ledger::written(
    const std::vector<std::int64_t>& versions) const {
  for (std::size_t p = 0; p < kept_.size(); ++p) {
    const auto& d = kept_[p];
    if (p >= versions.size() || versions[p] < 0 || d.empty() ||
        *std::max_element(d.begin(), d.end()) < versions[p])
      return false;
  }
  return true;
}

std::int64_t checkpoint_ledger::oldest_kept() const {
  std::int64_t oldest = std::numeric_limits<std::int64_t>::max();
  for (const auto& d : kept_)
    oldest = std::min(oldest, d.empty() ? std::int64_t{0} : d.front());
  return kept_.empty() ? 0 : oldest;
}

void checkpoint_ledger::restart_from(std::int64_t version) {
  for (auto& d : kept_)
    d.clear();
  pruned_ = version;
}

void checkpoint_ledger::resumed(std::int64_t version) {
  checkpoint_ = version;
}

} // namespace troupe::actors

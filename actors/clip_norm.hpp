#pragma once
/// \file optimizer.clip_norm across param shards (sync): each shard sends
/// the sums of squares of its segments of a step's gradient; once all are
/// in, the step's scale is what torch.nn.utils.clip_grad_norm_ would apply
/// to the whole gradient. Scales are kept for replays. No CAF.
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace troupe::actors {

class clip_norm_scales {
public:
  /// `keep_steps`: how far back of the oldest kept snapshot a replay may
  /// ask again.
  clip_norm_scales(std::int32_t shards, double clip_norm,
                   std::int64_t keep_steps)
    : shards_(shards)
    , clip_norm_(clip_norm)
    , keep_steps_(keep_steps) {}

  struct answer {
    float scale = 1;
    bool to_all = false; ///< decided now: every shard gets it; else the
                         ///< asking shard only (a replay)
  };

  /// Shard `shard`'s segment sums for step `step`. The step's scale once
  /// every shard's sums are in (or at once, for a step decided before);
  /// none while some are missing or for a shard the job does not have.
  /// `oldest_kept`: the oldest step a snapshot may restore to.
  std::optional<answer> add(std::int64_t step, std::int32_t shard,
                            std::vector<double> sums,
                            std::int64_t oldest_kept) {
    if (shard < 0 || shard >= shards_)
      return std::nullopt;
    if (auto known = scales_.find(step); known != scales_.end())
      return answer{known->second, false};
    auto& parts = parts_[step];
    parts[shard] = std::move(sums);
    if (static_cast<std::int32_t>(parts.size()) < shards_)
      return std::nullopt;
    double total = 0; // in model order: shard by shard, segment by segment
    for (const auto& [s, v] : parts)
      for (double x : v)
        total += x;
    const double norm = std::sqrt(total);
    const auto scale = static_cast<float>(
        norm > clip_norm_ ? clip_norm_ / (norm + 1e-6) : 1.0);
    scales_[step] = scale;
    parts_.erase(step);
    // Scales older than every shard's older snapshot are not replayed.
    const auto oldest = std::min(step, oldest_kept);
    scales_.erase(scales_.begin(), scales_.lower_bound(oldest - keep_steps_));
    return answer{scale, true};
  }

  /// Steps whose scale is kept.
  std::size_t kept() const { return scales_.size(); }

private:
  std::int32_t shards_;
  double clip_norm_;
  std::int64_t keep_steps_;
  std::map<std::int64_t, std::map<std::int32_t, std::vector<double>>> parts_;
  std::map<std::int64_t, float> scales_;
};

} // namespace troupe::actors

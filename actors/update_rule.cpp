#include "actors/update_rule.hpp"

#include "actors/job_spec.hpp"

namespace troupe::actors {

update_rule::update_rule(const job_spec& spec)
  : mode_(spec.mode == "async" ? mode::async
          : spec.mode == "ssp" ? mode::ssp
                               : mode::sync)
  , workers_(spec.workers > 0 ? spec.workers : 1)
  , batch_(spec.batch > 0 ? spec.batch : 1)
  , staleness_(spec.staleness)
  , steps_per_epoch_(spec.steps_per_epoch) {}

std::int64_t update_rule::versions_per_epoch() const {
  return sums_workers() ? steps_per_epoch_ : steps_per_epoch_ * workers_;
}

std::int64_t update_rule::step_of_version(std::int64_t v) const {
  return sums_workers() ? v : (v + workers_ - 1) / workers_;
}

float update_rule::grad_scale() const {
  return 1.0f / static_cast<float>(sums_workers() ? batch_ : batch_ / workers_);
}

float update_rule::stat_share() const {
  return sums_workers() ? 1.0f / static_cast<float>(workers_) : 1.0f;
}

std::int64_t update_rule::step_of(std::int64_t version,
                                  std::int64_t tag) const {
  return sums_workers() ? version : tag;
}

bool update_rule::may_go_on(std::int64_t clock, std::int64_t slowest) const {
  return mode_ != mode::ssp || clock - slowest <= staleness_;
}

std::int64_t update_rule::replay_from(std::int64_t version,
                                      const std::vector<std::int64_t>& ledger,
                                      std::size_t r,
                                      std::size_t workers) const {
  if (sums_workers())
    return version;
  return ledger.size() == workers && r < workers ? ledger[r] + 1 : 0;
}

} // namespace troupe::actors

#include "actors/epochs.hpp"

#include "actors/reports.hpp"

#include <algorithm>
#include <numeric>

namespace troupe::actors {

epoch_accounting::epoch_accounting(job_spec spec)
  : spec_(std::move(spec))
  , steps_done_(static_cast<std::size_t>(spec_.workers), 0)
  , counted_(static_cast<std::size_t>(spec_.workers),
             std::vector<bool>(static_cast<std::size_t>(
                 std::max<std::int64_t>(0, spec_.total_steps()))))
  , pushed_(static_cast<std::size_t>(spec_.workers), 0) {}

bool epoch_accounting::report(const progress_msg& p, bool current,
                              clock_type::time_point now) {
  const auto w = static_cast<std::size_t>(p.worker);
  if (p.worker < 0 || w >= steps_done_.size() ||
      p.losses.size() != p.samples.size())
    return false;
  if (current) {
    steps_done_[w] = p.steps_done;
    pushed_[w] = p.pushed;
  }
  max_lead_ = std::max(max_lead_, p.max_lead);
  compute_s_ += p.compute_s;
  grad_buffers_ = std::max(grad_buffers_, p.grad_buffers);
  wait_s_ += p.wait_s;
  auto& counted = counted_[w];
  const auto per_epoch = spec_.steps_per_epoch;
  double recent = 0;
  std::int64_t recent_n = 0;
  bool finished = false;
  for (std::size_t i = 0; i < p.losses.size(); ++i) {
    const auto step = p.first_step + static_cast<std::int64_t>(i);
    if (step < 0 || step >= static_cast<std::int64_t>(counted.size()) ||
        counted[static_cast<std::size_t>(step)])
      continue;
    counted[static_cast<std::size_t>(step)] = true;
    auto& acc = epochs_[step / per_epoch];
    acc.loss_sum += p.losses[i];
    acc.samples += p.samples[i];
    recent += p.losses[i];
    recent_n += p.samples[i];
    if ((step + 1) % per_epoch == 0 && ++acc.workers_done == spec_.workers) {
      acc.trained = true;
      acc.end = now;
      finished = true;
    }
  }
  if (recent_n > 0)
    recent_loss_ = recent / static_cast<double>(recent_n);
  return finished;
}

void epoch_accounting::evaluated(const eval_msg& e) {
  epochs_[e.epoch - 1].eval = evaluation{e.loss, e.accuracy, e.metrics};
}

bool epoch_accounting::has_evaluation(std::int64_t epoch) const {
  auto it = epochs_.find(epoch - 1);
  return it != epochs_.end() && it->second.eval.has_value();
}

std::optional<epoch_summary> epoch_accounting::next(bool evaluation) {
  if (reported_ >= spec_.epochs)
    return std::nullopt;
  auto it = epochs_.find(reported_);
  if (it == epochs_.end() || !it->second.trained ||
      (evaluation && !it->second.eval))
    return std::nullopt;
  const auto& acc = it->second;
  epoch_summary s;
  s.epoch = reported_ + 1;
  s.steps = s.epoch * spec_.steps_per_epoch;
  s.lr = spec_.lr_at(s.steps);
  s.train_loss =
      acc.samples > 0 ? acc.loss_sum / static_cast<double>(acc.samples) : 0;
  // The epoch before may have run in an earlier job (--resume).
  const auto prev = epochs_.find(reported_ - 1);
  const auto begin = prev != epochs_.end() && prev->second.trained
                         ? prev->second.end
                         : t_start_;
  const double secs = std::chrono::duration<double>(acc.end - begin).count();
  // A resumed job may have trained only the epoch's last steps.
  const auto trained =
      s.steps - std::max(reported_ * spec_.steps_per_epoch, first_step_);
  s.samples_per_s =
      secs > 0 ? static_cast<double>(trained * spec_.batch) / secs : 0;
  s.wall_s = std::chrono::duration<double>(acc.end - t_start_).count();
  if (acc.eval) {
    s.evaluated = true;
    s.test_loss = acc.eval->loss;
    if (acc.eval->accuracy >= 0)
      s.test_accuracy = acc.eval->accuracy;
    s.metrics = acc.eval->metrics;
  }
  ++reported_;
  return s;
}

std::int64_t epoch_accounting::slowest() const {
  return steps_done_.empty()
             ? 0
             : *std::min_element(steps_done_.begin(), steps_done_.end());
}

void epoch_accounting::workers_at(const std::vector<std::int64_t>& steps) {
  for (std::size_t r = 0; r < steps.size() && r < steps_done_.size(); ++r)
    steps_done_[r] = steps[r];
}

std::int64_t epoch_accounting::pushed() const {
  return std::accumulate(pushed_.begin(), pushed_.end(), std::int64_t{0});
}

early_stopping::early_stopping(const job_spec& spec)
  : monitor_(spec.monitor)
  , maximize_(spec.monitor_maximizes())
  , patience_(spec.patience)
  , epochs_(spec.epochs) {}

void early_stopping::keep(std::int64_t epoch, devices::tensor params) {
  params_[epoch] = std::move(params);
}

early_stopping::verdict early_stopping::judge(const epoch_summary& s) {
  const double value = monitor_ == "test_accuracy" ? s.test_accuracy.value_or(0)
                       : monitor_ == "test_mae"    ? s.metrics.mae
                       : monitor_ == "test_rmse"   ? s.metrics.rmse
                       : monitor_ == "test_r2"     ? s.metrics.r2
                                                   : s.test_loss;
  auto params = params_.find(s.epoch);
  const bool better = best_epoch_ == 0 ||
                      (maximize_ ? value > best_value_ : value < best_value_);
  if (better && params != params_.end()) {
    best_value_ = value;
    best_epoch_ = s.epoch;
    best_params_ = params->second;
    since_best_ = 0;
  } else {
    ++since_best_;
  }
  if (params != params_.end())
    params_.erase(params);
  const bool last = s.epoch >= epochs_;
  if ((since_best_ < patience_ && !last) || !best_params_.defined())
    return verdict::go_on;
  return last ? verdict::keep_best : verdict::stop;
}

} // namespace troupe::actors

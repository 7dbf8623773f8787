#include "actors/history.hpp"

#include <algorithm>
#include <limits>

namespace troupe::actors {

epoch_point point_of(const epoch_summary& s, double t) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  return {s.epoch,
          s.steps,
          t,
          s.train_loss,
          s.evaluated ? s.test_loss : nan,
          s.test_accuracy.value_or(nan),
          s.samples_per_s};
}

history_recorder::history_recorder(std::size_t max_points)
  : max_points_(std::max<std::size_t>(max_points, 2)) {}

void history_recorder::progress(const progress_point& p) {
  auto& v = h_.progress;
  // Report i is kept while i is a multiple of the stride; a rollback
  // sends steps back, and the curve shows it as it happened.
  if (seen_++ % stride_ != 0)
    return;
  v.push_back(p);
  if (v.size() < max_points_)
    return;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < v.size(); i += 2)
    v[kept++] = v[i];
  v.resize(kept); // v[j] was report j * stride_: the even j stay
  stride_ *= 2;
}

void history_recorder::epoch(const epoch_point& e) {
  h_.epochs.push_back(e);
}

void history_recorder::event(const job_event& e) {
  h_.events.push_back(e);
}

job_history history_recorder::snapshot(double now) const {
  auto h = h_;
  h.t = now;
  return h;
}

} // namespace troupe::actors

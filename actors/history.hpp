#pragma once
/// \file The coordinator's record of a running job for dashboards: every
/// progress report (thinned as it grows), epoch and supervision event.
#include "actors/run.hpp"

#include <cstddef>

namespace troupe::actors {

/// An epoch's figures as the history keeps them, reported at `t`.
epoch_point point_of(const epoch_summary& s, double t);

class history_recorder {
public:
  /// At most `max_points` progress points are kept: when full, every
  /// other one goes and only every 2nd (then 4th, ...) report is kept, so
  /// the curve spans the whole job at an even density.
  explicit history_recorder(std::size_t max_points = 2000);

  void progress(const progress_point& p);
  void epoch(const epoch_point& e);
  void event(const job_event& e);
  /// Everything so far, `now` on the coordinator's clock.
  job_history snapshot(double now) const;

private:
  std::size_t max_points_;
  std::size_t stride_ = 1; // keep one report in stride_
  std::size_t seen_ = 0;   // reports so far
  job_history h_;
};

} // namespace troupe::actors

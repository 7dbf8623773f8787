#pragma once
/// \file What `troupe run` shows while a job trains: the figures of the
/// moment from the progress reports (epoch, step, loss, samples/s, elapsed,
/// ETA), a one-line bar that fits a terminal's width, and the plain lines
/// written when stderr is not a terminal.
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>

namespace troupe::watch {

/// The figures of one moment of a run.
struct progress_figures {
  std::int64_t epoch = 1; ///< the epoch under way, 1-based
  std::int64_t epochs = 1;
  std::int64_t step = 0; ///< steps done (the slowest worker's), all epochs
  std::int64_t steps = 0;
  double loss = 0;
  double samples_per_s = 0;    ///< over the last window; 0: not known yet
  double elapsed_s = 0;        ///< since the run started
  std::optional<double> eta_s; ///< until the last step, at the recent rate
};

/// Turns progress reports into figures. The rate is measured over the
/// reports of the last `window_s` seconds, so start-up, a rollback or a
/// resumed run's skipped steps do not distort it.
class progress_meter {
public:
  /// batch: samples per step (all workers).
  progress_meter(std::int64_t epochs, std::int64_t batch, double window_s = 10);
  /// A report: `done` of `total` steps at `now_s` seconds since the run
  /// started, recent loss `loss`.
  progress_figures update(std::int64_t done, std::int64_t total, double loss,
                          double now_s);

private:
  std::int64_t epochs_;
  std::int64_t batch_;
  double window_s_;
  std::deque<std::pair<double, std::int64_t>> recent_; // (now_s, done)
};

/// "1:02:03" or "2:03".
std::string clock_text(double seconds);

/// One line of at most `columns - 1` characters (the last column left free
/// so that no terminal wraps it): epoch, step/steps and loss always, then as
/// room allows ETA, samples/s, elapsed and a bar.
std::string bar_line(const progress_figures& f, int columns);

/// The line written every few seconds when stderr is not a terminal.
std::string plain_line(const progress_figures& f);

/// The width of the terminal on file descriptor `fd`; $COLUMNS or 80 when
/// it cannot tell.
int terminal_columns(int fd);

} // namespace troupe::watch

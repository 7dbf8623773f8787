#include "tools/watch/progress.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sys/ioctl.h>
#include <vector>

namespace troupe::watch {

progress_meter::progress_meter(std::int64_t epochs, std::int64_t batch,
                               double window_s)
  : epochs_(std::max<std::int64_t>(epochs, 1))
  , batch_(batch)
  , window_s_(window_s) {}

progress_figures progress_meter::update(std::int64_t done, std::int64_t total,
                                        double loss, double now_s) {
  progress_figures f;
  f.epochs = epochs_;
  f.step = done;
  f.steps = total;
  f.loss = loss;
  f.elapsed_s = now_s;
  const auto per_epoch = total / epochs_;
  if (per_epoch > 0)
    f.epoch = std::min(done / per_epoch + 1, epochs_);
  // Steps going back (a rollback) start the window again.
  if (!recent_.empty() && done < recent_.back().second)
    recent_.clear();
  recent_.emplace_back(now_s, done);
  while (recent_.size() > 2 && now_s - recent_[1].first >= window_s_)
    recent_.pop_front();
  const auto& [t0, d0] = recent_.front();
  if (now_s > t0 && done > d0) {
    const double steps_per_s = static_cast<double>(done - d0) / (now_s - t0);
    f.samples_per_s = steps_per_s * static_cast<double>(batch_);
    f.eta_s = static_cast<double>(total - done) / steps_per_s;
  }
  return f;
}

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(seconds, 0.0)));
  if (s >= 3600)
    return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

namespace {

std::string rate_text(double samples_per_s) {
  return samples_per_s > 0 ? fmt::format("{:.0f} samples/s", samples_per_s)
                           : std::string("- samples/s");
}

std::string eta_text(const progress_figures& f) {
  return f.eta_s ? "ETA " + clock_text(*f.eta_s) : std::string("ETA -");
}

} // namespace

std::string bar_line(const progress_figures& f, int columns) {
  const auto room = static_cast<std::size_t>(std::max(columns - 1, 1));
  std::string line = fmt::format("epoch {}/{}  step {}/{}  loss {:.4f}",
                                 f.epoch, f.epochs, f.step, f.steps, f.loss);
  if (line.size() > room) // narrower still: the essentials, packed
    line = fmt::format("e{}/{} {}/{} loss {:.4f}", f.epoch, f.epochs, f.step,
                       f.steps, f.loss);
  for (const auto& extra : {eta_text(f), rate_text(f.samples_per_s),
                            clock_text(f.elapsed_s) + " elapsed"}) {
    if (line.size() + 2 + extra.size() > room)
      break;
    line += "  " + extra;
  }
  // The bar takes what is left, when that is enough to read.
  const std::size_t bar_min = 12;
  if (line.size() + 1 + bar_min <= room) {
    const auto inner = std::min<std::size_t>(room - line.size() - 3, 40);
    const auto filled =
        f.steps > 0 ? static_cast<std::size_t>(
                          static_cast<double>(inner) *
                          static_cast<double>(
                              std::clamp<std::int64_t>(f.step, 0, f.steps)) /
                          static_cast<double>(f.steps))
                    : 0;
    line = "[" + std::string(filled, '#') + std::string(inner - filled, '.') +
           "] " + line;
  }
  if (line.size() > room)
    line.resize(room);
  return line;
}

std::string plain_line(const progress_figures& f) {
  return fmt::format("epoch {}/{}  step {}/{}  loss {:.4f}  {}  elapsed {}  {}",
                     f.epoch, f.epochs, f.step, f.steps, f.loss,
                     rate_text(f.samples_per_s), clock_text(f.elapsed_s),
                     eta_text(f));
}

int terminal_columns(int fd) {
  winsize ws{};
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long v = std::strtol(c, &end, 10);
    if (end != c && *end == '\0' && v > 0 && v < 10000)
      return static_cast<int>(v);
  }
  return 80;
}

} // namespace troupe::watch

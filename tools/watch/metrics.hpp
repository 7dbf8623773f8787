#pragma once
/// \file Reading `troupe run --metrics` files (docs/metrics.md) back: each
/// run's curves and supervision events, for `troupe plot`.
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::watch {

/// A metrics file that cannot be read; what() names the file and line.
class metrics_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// One value of a curve, at a step and a time.
struct sample_point {
  double step = 0; ///< steps done, all epochs
  double t = 0;    ///< seconds since the run's start line
  double value = 0;
};

/// A supervision event (fault, failed, node_lost, rollback, resumed,
/// recovered, early_stop).
struct event_mark {
  double step = 0;
  double t = 0;
  std::string kind;
  std::string message;
};

/// One run of a metrics file (from its start line to the next).
struct run_series {
  std::string label;                       ///< job name, and where it came from
  std::vector<sample_point> loss;          ///< progress: recent train loss
  std::vector<sample_point> test_loss;     ///< by epoch
  std::vector<sample_point> test_accuracy; ///< by epoch (classifiers)
  std::vector<sample_point> samples_per_s; ///< progress
  std::vector<sample_point> lr;            ///< progress
  std::vector<event_mark> events;
  bool finished = false; ///< has its end line
};

/// Every run in `path`, in order. Lines before a first start line (an
/// older format) count as one run. A last line cut short (a run killed
/// while writing) is left out; any other line that is not a JSON object
/// throws metrics_error "PATH:LINE: ...".
std::vector<run_series> read_metrics(const std::string& path);

} // namespace troupe::watch

#pragma once
/// \file What a dashboard shows of a job, and its JSON (`/api/state`): the
/// figures of the moment, the nodes with their actors and restarts, the
/// curves and the supervision events. Filled by the CLI from a running
/// job (troupe run) or from its coordinator (troupe status).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace troupe::watch {

struct node_row {
  std::string name;
  std::vector<std::string> devices;
  bool lost = false;
  /// Actor name ("worker:0", "worker:1@cuda:0") and its restarts so far.
  std::vector<std::pair<std::string, std::int64_t>> actors;
};

struct progress_row {
  std::int64_t step = 0;
  double t = 0; ///< seconds since the job started
  double loss = 0;
  double lr = 0;
};

struct epoch_row {
  std::int64_t epoch = 0;
  std::int64_t step = 0;
  double t = 0;
  double train_loss = 0;
  double test_loss = 0;     ///< NaN: not evaluated
  double test_accuracy = 0; ///< NaN: not a classifier / not evaluated
};

struct event_row {
  double t = 0;
  std::int64_t step = 0;
  std::string kind, actor, node, message;
};

struct job_record {
  std::string job, mode, state; ///< state: starting, training, finished
  std::int64_t epochs = 1;      ///< of the job
  std::int64_t steps = 0;       ///< of the job
  std::int64_t batch = 0;       ///< samples per step
  double t = 0;                 ///< now
  std::vector<node_row> nodes;
  std::vector<progress_row> progress; ///< oldest first
  std::vector<epoch_row> epochs_done;
  std::vector<event_row> events;
};

/// The record as one JSON object: job, mode, state, step, steps, epoch,
/// epochs, loss, lr, samples_per_s (over the last 10 s), elapsed_s,
/// eta_s, restarts (all), nodes [{name, devices, lost, actors [{name,
/// restarts}]}], progress [[step, t, loss, lr, samples_per_s]],
/// epochs_done [{epoch, step, t, train_loss, test_loss, test_accuracy}] and
/// events [{t, step, kind, actor, node, message}]; unknown figures are
/// null.
std::string to_json(const job_record& r);

} // namespace troupe::watch

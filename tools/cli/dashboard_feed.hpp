#pragma once
// What `troupe run --dashboard` and `troupe status --dashboard` show: a
// job's status and history (actors/run.hpp) as the dashboard's record.
#include "actors/run.hpp"
#include "tools/watch/record.hpp"

#include <algorithm>

namespace troupe::cli {

/// An actor as status shows it: a worker on a GPU with its device
/// ("worker:0@cuda:0").
inline std::string actor_label(const actors::job_status& s,
                               const std::string& actor) {
  if (actor.rfind("worker:", 0) == 0) {
    const auto rank = std::stoul(actor.substr(7));
    if (rank < s.worker_devices.size() && s.worker_devices[rank] != "cpu")
      return actor + "@" + s.worker_devices[rank];
  }
  return actor;
}

inline watch::job_record record_of(const actors::job_status& s,
                                   const actors::job_history& h) {
  watch::job_record r;
  r.job = s.job;
  r.mode = s.mode;
  r.state = s.state;
  r.epochs = s.epochs;
  r.steps = s.steps;
  r.batch = s.batch;
  r.t = h.t;
  for (std::size_t i = 0; i < s.nodes.size(); ++i) {
    watch::node_row n;
    n.name = s.nodes[i];
    if (i < s.node_devices.size())
      n.devices = s.node_devices[i];
    n.lost = std::find(s.lost_nodes.begin(), s.lost_nodes.end(), n.name) !=
             s.lost_nodes.end();
    for (const auto& [actor, node] : s.placement) {
      if (node != n.name)
        continue;
      auto restarts = s.restarts.find(actor);
      n.actors.emplace_back(actor_label(s, actor), restarts != s.restarts.end()
                                                       ? restarts->second
                                                       : 0);
    }
    r.nodes.push_back(std::move(n));
  }
  for (const auto& p : h.progress)
    r.progress.push_back({p.step, p.t, p.loss, p.lr});
  for (const auto& e : h.epochs)
    r.epochs_done.push_back(
        {e.epoch, e.step, e.t, e.train_loss, e.test_loss, e.test_accuracy});
  for (const auto& e : h.events)
    r.events.push_back({e.t, e.step, e.kind, e.actor, e.node, e.message});
  return r;
}

} // namespace troupe::cli

#include "tools/watch/record.hpp"

#include <nlohmann/json.hpp>

#include <cmath>

namespace troupe::watch {

namespace {

using json = nlohmann::ordered_json;

json number_or_null(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

json text_or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

} // namespace

std::string to_json(const job_record& r) {
  // samples/s at each point: over the reports of the 10 s before it (a
  // rollback, steps going back, starts the window again).
  json progress = json::array();
  std::vector<double> rate(r.progress.size(), std::nan(""));
  std::size_t from = 0;
  for (std::size_t i = 0; i < r.progress.size(); ++i) {
    const auto& p = r.progress[i];
    if (i > 0 && p.step < r.progress[i - 1].step)
      from = i;
    while (from < i && p.t - r.progress[from + 1].t >= 10)
      ++from;
    const auto& q = r.progress[from];
    // Over at least a second: a few reports in a burst (a replay after a
    // rollback) are no rate.
    if (p.t - q.t >= 1.0 && p.step > q.step)
      rate[i] = static_cast<double>((p.step - q.step) * r.batch) / (p.t - q.t);
    progress.push_back(
        json::array({p.step, p.t, p.loss, p.lr, number_or_null(rate[i])}));
  }
  json nodes = json::array();
  std::int64_t restarts = 0;
  for (const auto& n : r.nodes) {
    json actors = json::array();
    for (const auto& [name, count] : n.actors) {
      actors.push_back(json{{"name", name}, {"restarts", count}});
      restarts += count;
    }
    nodes.push_back(json{{"name", n.name},
                         {"devices", n.devices},
                         {"lost", n.lost},
                         {"actors", actors}});
  }
  json epochs = json::array();
  for (const auto& e : r.epochs_done)
    epochs.push_back(json{{"epoch", e.epoch},
                          {"step", e.step},
                          {"t", e.t},
                          {"train_loss", number_or_null(e.train_loss)},
                          {"test_loss", number_or_null(e.test_loss)},
                          {"test_accuracy", number_or_null(e.test_accuracy)}});
  json events = json::array();
  for (const auto& e : r.events)
    events.push_back(json{{"t", e.t},
                          {"step", e.step},
                          {"kind", e.kind},
                          {"actor", text_or_null(e.actor)},
                          {"node", text_or_null(e.node)},
                          {"message", e.message}});
  const progress_row* last = r.progress.empty() ? nullptr : &r.progress.back();
  const double now_rate = rate.empty() ? std::nan("") : rate.back();
  const std::int64_t step = last != nullptr ? last->step : 0;
  const std::int64_t per_epoch = r.epochs > 0 ? r.steps / r.epochs : 0;
  json j{
      {"job", r.job},
      {"mode", r.mode},
      {"state", r.state},
      {"step", step},
      {"steps", r.steps},
      {"epoch", per_epoch > 0 ? std::min(step / per_epoch + 1, r.epochs) : 1},
      {"epochs", r.epochs},
      {"loss", last != nullptr ? json(last->loss) : json(nullptr)},
      {"lr", last != nullptr ? json(last->lr) : json(nullptr)},
      {"samples_per_s", number_or_null(now_rate)},
      {"elapsed_s", r.t},
      {"eta_s",
       std::isfinite(now_rate) && now_rate > 0 && r.batch > 0
           ? json(static_cast<double>((r.steps - step) * r.batch) / now_rate)
           : json(nullptr)},
      {"restarts", restarts},
      {"nodes", nodes},
      {"progress", progress},
      {"epochs_done", epochs},
      {"events", events}};
  return j.dump();
}

} // namespace troupe::watch

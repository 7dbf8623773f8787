// A job's [controller] as the coordinator runs it (control.hpp).
#include "actors/control.hpp"

#include <cmath>
#include <exception>
#include <iterator>
#include <utility>

#include <fmt/format.h>

namespace troupe::actors {

job_control::job_control(const job_spec& spec)
  : spec_(spec)
  , controller_(stages::make_controller(
        spec.controller.type,
        stages::params("controller", spec.controller.params))) {}

job_event job_control::event(std::int64_t step, std::string message) const {
  job_event e;
  e.kind = "controller";
  e.step = step;
  e.message = std::move(message);
  return e;
}

bool job_control::tell(const told& t, stages::decision& d, outcome& out) {
  const auto& type = spec_.controller.type;
  const auto where = t.epoch ? fmt::format("after epoch {}", t.e.epoch)
                             : fmt::format("at step {}", t.s.step);
  auto ask = [](stages::controller& c, const told& what) {
    return what.epoch ? c.on_epoch(what.e) : c.on_step(what.s);
  };
  for (;;) {
    std::string why;
    try {
      d = ask(*controller_, t);
      history_.push_back(t);
      return true;
    } catch (const std::exception& e) {
      why = e.what();
    }
    // As a failed actor: restarted, unless it failed too often of late.
    const auto now = std::chrono::steady_clock::now();
    const auto window = std::chrono::duration<double>(spec_.within_s);
    while (!restarts_.empty() && now - restarts_.front() > window)
      restarts_.pop_front();
    if (static_cast<std::int64_t>(restarts_.size()) >= spec_.max_restarts) {
      out.error = fmt::format(
          "controller \"{}\" failed {}: {}{}", type, where, why,
          restarts_.empty()
              ? ""
              : fmt::format(" (supervision gave up after {} restart(s) within "
                            "{} s: supervision.max_restarts = {})",
                            restarts_.size(), spec_.within_s,
                            spec_.max_restarts));
      return false;
    }
    restarts_.push_back(now);
    ++out.restarts;
    job_event e;
    e.kind = "failed";
    e.actor = "controller";
    e.step = t.epoch ? t.e.epoch * spec_.steps_per_epoch : t.s.step;
    e.message = fmt::format("controller {} failed {} ({}); restarting it, "
                            "told again the {} figure(s) it was told",
                            type, where, why, history_.size());
    out.events.push_back(std::move(e));
    try {
      auto fresh = stages::make_controller(
          type, stages::params("controller", spec_.controller.params));
      for (const auto& h : history_)
        ask(*fresh, h); // its state again; decided already
      controller_ = std::move(fresh);
    } catch (const std::exception&) {
      // Failed while being told again: the next round counts it.
    }
  }
}

job_control::outcome job_control::on_step(std::int64_t step, double loss,
                                          double lr) {
  outcome out;
  // Each step once: after a rollback, steps redone are not told again.
  if (step <= last_step_ || step >= spec_.total_steps())
    return out;
  last_step_ = step;
  told t;
  t.s.step = step;
  t.s.steps = spec_.total_steps();
  t.s.epoch = step / spec_.steps_per_epoch + 1;
  t.s.loss = loss;
  t.s.lr = lr;
  stages::decision d;
  if (!tell(t, d, out))
    return out;
  if (d.lr_scale != 1) {
    out.error = fmt::format("controller \"{}\" at step {}: lr_scale {} asked "
                            "between epochs (the lr changes at epochs only: "
                            "decide it in on_epoch)",
                            spec_.controller.type, step, d.lr_scale);
    return out;
  }
  if (!d.stop && !d.checkpoint)
    return out;
  auto& a = asked_[t.s.epoch];
  if (a.stop || a.checkpoint)
    return out; // the first asking of the epoch is the one logged
  a.stop = d.stop;
  a.checkpoint = d.checkpoint;
  a.step = step;
  a.reason = d.reason;
  return out;
}

job_control::outcome job_control::judge(const epoch_summary& s) {
  outcome out;
  const auto& type = spec_.controller.type;
  told t;
  t.epoch = true;
  auto& f = t.e;
  f.epoch = s.epoch;
  f.epochs = spec_.epochs;
  f.train_loss = s.train_loss;
  f.evaluated = s.evaluated;
  f.test_loss = s.test_loss;
  f.test_accuracy = s.test_accuracy.value_or(-1);
  f.lr = s.lr;
  f.metrics = s.metrics.custom;
  for (const auto scale : decided_)
    f.lr_scale *= scale;
  stages::decision d;
  if (!tell(t, d, out))
    return out;
  if (!std::isfinite(d.lr_scale) || d.lr_scale <= 0 || d.lr_scale > 1e6) {
    out.error = fmt::format("controller \"{}\" after epoch {}: lr_scale {} is "
                            "not in (0, 1e6]",
                            type, s.epoch, d.lr_scale);
    return out;
  }
  auto because = d.reason.empty() ? std::string() : ": " + d.reason;
  if (auto a = asked_.find(s.epoch); a != asked_.end()) {
    // Asked for at a step of this epoch: decided now.
    const auto at =
        fmt::format(" (asked at step {}{}{})", a->second.step,
                    a->second.reason.empty() ? "" : ": ", a->second.reason);
    if (a->second.stop && !d.stop) {
      d.stop = true;
      because = at;
    }
    if (a->second.checkpoint && !d.checkpoint) {
      d.checkpoint = true;
      if (d.reason.empty())
        d.reason = a->second.reason;
    }
    asked_.erase(asked_.begin(), std::next(a));
  }
  // Every shard gets every decision (a stopped job's shards are released
  // too, until they are stopped).
  decided_.push_back(d.stop ? 1.0 : d.lr_scale);
  out.tell_shards = true;
  out.reason = d.reason;
  auto kept = judged_.find(s.epoch);
  if (d.checkpoint) {
    if (kept != judged_.end()) {
      out.checkpoint = kept->second;
      out.events.push_back(
          event(s.steps,
                fmt::format("controller {}: keep epoch {}'s model{}", type,
                            s.epoch, d.reason.empty() ? "" : ": " + d.reason)));
    } else {
      // Not here: an epoch judged again after a rollback is not told again,
      // so this cannot happen; said rather than dropped silently.
      out.events.push_back(
          event(s.steps, fmt::format("controller {}: epoch {}'s model was "
                                     "asked for but its parameters are gone",
                                     type, s.epoch)));
    }
  }
  if (d.stop) {
    stop_after_ = s.epoch;
    out.stop = true;
    out.events.push_back(event(
        s.steps, fmt::format("controller {}: stop after epoch {}, keeping its "
                             "parameters{}",
                             type, s.epoch, because)));
    return out;
  }
  // Epoch parameters judged and not stopped at are no longer needed.
  judged_.erase(judged_.begin(), judged_.upper_bound(s.epoch));
  if (d.lr_scale != 1) {
    const auto from = (s.epoch + 1) * spec_.steps_per_epoch;
    out.events.push_back(event(
        from,
        fmt::format("controller {}: lr x {:g} after epoch {} (lr {:g} "
                    "from step {}, epoch {}){}",
                    type, d.lr_scale, s.epoch, spec_.lr_at(from + 1, decided_),
                    from + 1, s.epoch + 2, because)));
  }
  return out;
}

bool job_control::wants(std::int64_t epoch) const {
  return static_cast<std::int64_t>(decided_.size()) < epoch ||
         stop_after_ == epoch;
}

void job_control::keep(std::int64_t epoch, devices::tensor params) {
  if (wants(epoch))
    judged_[epoch] = std::move(params);
}

const devices::tensor* job_control::stopped_params() const {
  auto it = judged_.find(stop_after_);
  return stop_after_ == 0 || it == judged_.end() ? nullptr : &it->second;
}

} // namespace troupe::actors

#include "actors/run.hpp"

#include "actors/messages.hpp"

#include <chrono>
#include <thread>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

data_facts facts_of(const data::dataset& ds) {
  return {ds.samples, ds.features, ds.classes, ds.targets, ds.description};
}

} // namespace

run_result run_job(job_spec spec, const run_observer& obs) {
  const auto t0 = std::chrono::steady_clock::now();
  auto info = [&](const std::string& s) {
    if (obs.on_info)
      obs.on_info(s);
  };
  // Load and check the data before anything starts: bad input ends here
  // with a message naming the file. The actors of this process share it.
  auto train = data::load_shared(train_source(spec));
  info(fmt::format("train: {}", train->description));
  std::shared_ptr<const data::dataset> test;
  data_facts test_facts;
  if (!spec.test.empty()) {
    test = data::load_shared(test_source(spec));
    test_facts = facts_of(*test);
    info(fmt::format("test:  {}", test->description));
  }
  resolve_job_spec(spec, facts_of(*train), test ? &test_facts : nullptr);

  caf::actor_system_config cfg;
  register_roles(cfg);
  const auto threads = spec.threads > 0
                           ? static_cast<std::size_t>(spec.threads)
                           : std::max(1u, std::thread::hardware_concurrency());
  cfg.set("scheduler.max-threads", threads);
  caf::actor_system sys{cfg};
  std::optional<run_result> result;
  std::string failure;
  {
    caf::scoped_actor self{sys};
    auto coord = sys.spawn<caf::actor>(
        "coordinator",
        caf::make_message(spec, caf::actor_cast<caf::actor>(self)));
    if (!coord)
      throw training_failed("cannot start the coordinator: " +
                            sys.render(coord.error()));
    self->monitor(*coord);
    // No step may take longer than this without any progress report.
    const auto stall = std::chrono::seconds(600);
    bool running = true;
    while (running) {
      self->receive(
          [&](info_atom, const std::string& s) { info(s); },
          [&](progress_atom, std::int64_t done, std::int64_t total,
              double loss) {
            if (obs.on_progress)
              obs.on_progress(done, total, loss);
          },
          [&](epoch_atom, const epoch_summary& s) {
            if (obs.on_epoch)
              obs.on_epoch(s);
          },
          [&](done_atom, run_result& r) { result = std::move(r); },
          [&](failed_atom, const std::string& why) { failure = why; },
          [&](caf::down_msg& dm) {
            running = false;
            if (!result && failure.empty())
              failure = "the coordinator stopped: " + sys.render(dm.reason);
          },
          caf::after(stall) >>
              [&] {
                failure = fmt::format("no progress for {} s; stopping the job",
                                      stall.count());
                self->send_exit(*coord, caf::exit_reason::kill);
              });
    }
  }
  if (!result)
    throw training_failed(failure.empty() ? "training failed" : failure);
  result->wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  return *result;
}

} // namespace troupe::actors

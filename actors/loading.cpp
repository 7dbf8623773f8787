#include "actors/messages.hpp"

namespace troupe::actors {

data::source_spec train_source(const job_spec& spec) {
  data::source_spec s;
  s.format = spec.format;
  s.files = spec.train;
  s.target = spec.target;
  s.classes = spec.format == "csv" ? std::max<std::int64_t>(spec.classes, 0) : -1;
  return s;
}

data::source_spec test_source(const job_spec& spec) {
  auto s = train_source(spec);
  s.files = spec.test;
  return s;
}

void load_in_background(caf::event_based_actor* owner, data::source_spec src) {
  auto me = caf::actor_cast<caf::actor>(owner);
  owner->spawn<caf::detached>(
      [me, src = std::move(src)](caf::event_based_actor* loader) {
        try {
          loader->send(me, loaded_atom::value, data::load_shared(src));
        } catch (const std::exception& e) {
          loader->send_exit(me, caf::make_error(caf::sec::runtime_error,
                                                std::string(e.what())));
        }
      });
}

void register_roles(caf::actor_system_config& cfg) {
  register_data_shard(cfg);
  register_param_shard(cfg);
  register_worker(cfg);
  register_evaluator(cfg);
  register_coordinator(cfg);
  cfg.add_message_type<batch_msg>("troupe.batch_msg");
  cfg.add_message_type<grad_msg>("troupe.grad_msg");
  cfg.add_message_type<params_msg>("troupe.params_msg");
  cfg.add_message_type<progress_msg>("troupe.progress_msg");
  cfg.add_message_type<eval_msg>("troupe.eval_msg");
  cfg.add_message_type<job_spec>("troupe.job_spec");
  cfg.add_message_type<devices::tensor>("troupe.tensor");
}

} // namespace troupe::actors

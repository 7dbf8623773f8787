#include "actors/messages.hpp"

namespace troupe::actors {

data::source_spec train_source(const job_spec& spec) {
  data::source_spec s;
  s.format = spec.format;
  s.files = spec.train;
  s.target = spec.target;
  // csv: -1 (unset) reads numbers as regression targets, text as class
  // names. The training set's names are sorted, the same in every process.
  // A regression loss reads numbers only.
  s.classes = spec.format != "csv"     ? -1
              : !spec.classification() ? 0
                                       : spec.classes;
  return s;
}

data::source_spec test_source(const job_spec& spec) {
  auto s = train_source(spec);
  s.files = spec.test;
  s.labels = spec.labels; // the training set's mapping
  return s;
}

namespace {

// Runs once on its own thread, then ends. (Arguments are passed through
// spawn rather than captured: CAF 0.17 dereferences a null argument tuple
// for function actors spawned without arguments, which UBSan reports.)
void loader(caf::event_based_actor* self, caf::actor owner,
            data::source_spec src) {
  try {
    self->send(owner, loaded_atom::value, data::load_shared(src));
  } catch (const std::exception& e) {
    // The owner's supervisor may report this to a peer: from a node, the
    // file and position go back, never what the file holds.
    self->send_exit(owner,
                    caf::make_error(caf::sec::runtime_error,
                                    serving_peers() ? redact_quoted(e.what())
                                                    : std::string(e.what())));
  }
}

} // namespace

void load_in_background(caf::event_based_actor* owner, data::source_spec src) {
  owner->spawn<caf::detached>(loader, caf::actor_cast<caf::actor>(owner),
                              std::move(src));
}

caf::message decode_frame(runtime::bulk_header&& h, devices::tensor&& t) {
  const auto& v = h.tags;
  if (h.kind == grad_frame && v.size() == 6) {
    grad_msg g;
    g.worker = static_cast<std::int32_t>(v[0]);
    g.step = v[1];
    g.seq = v[2];
    g.lo = static_cast<std::int32_t>(v[3]);
    g.hi = static_cast<std::int32_t>(v[4]);
    g.offset = v[5];
    g.values = std::move(t);
    return caf::make_message(std::move(g));
  }
  if (h.kind == params_frame && v.size() == 6) {
    params_msg p;
    p.shard = static_cast<std::int32_t>(v[0]);
    p.version = v[1];
    p.offset = v[2];
    p.target = static_cast<std::int32_t>(v[3]);
    p.tag = v[4];
    p.min_clock = v[5];
    p.values = std::move(t);
    return caf::make_message(std::move(p));
  }
  return caf::message{};
}

void register_roles(caf::actor_system_config& cfg) {
  register_data_shard(cfg);
  register_stage(cfg);
  register_param_shard(cfg);
  register_worker(cfg);
  register_aggregator(cfg);
  register_evaluator(cfg);
  register_coordinator(cfg);
  cfg.add_message_type<batch_msg>("troupe.batch_msg");
  cfg.add_message_type<grad_msg>("troupe.grad_msg");
  cfg.add_message_type<params_msg>("troupe.params_msg");
  cfg.add_message_type<progress_msg>("troupe.progress_msg");
  cfg.add_message_type<shard_state_msg>("troupe.shard_state_msg");
  cfg.add_message_type<std::vector<devices::tensor>>("troupe.tensor_list");
  cfg.add_message_type<std::vector<std::int64_t>>("troupe.int64_list");
  cfg.add_message_type<eval_msg>("troupe.eval_msg");
  cfg.add_message_type<job_spec>("troupe.job_spec");
  cfg.add_message_type<devices::tensor>("troupe.tensor");
  cfg.add_message_type<job_status>("troupe.job_status");
  cfg.add_message_type<job_event>("troupe.job_event");
  cfg.add_message_type<job_history>("troupe.job_history");
  cfg.add_message_type<std::vector<std::int32_t>>("troupe.int32_list");
  cfg.add_message_type<std::vector<double>>("troupe.double_list");
  runtime::set_bulk_decoder(decode_frame);
}

} // namespace troupe::actors

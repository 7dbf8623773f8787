#include "actors/model_file.hpp"

namespace troupe::actors {

modelio::trained_model trained_model_of(const job_spec& spec,
                                        const run_result& r) {
  modelio::trained_model m;
  m.input = r.input_shape;
  m.layers = spec.layers;
  m.loss = spec.loss;
  m.params = r.params;
  m.classes = r.classes;
  m.labels = r.labels;
  m.input_format = spec.format;
  m.job = r.job;
  m.epoch = r.best_epoch > 0 ? r.best_epoch : r.epochs;
  m.params_digest = r.params_digest;
  if (spec.format == "csv")
    m.extra["target"] = spec.target;
  return m;
}

void check_savable(const job_spec& spec) {
  if (!spec.input_shape.empty())
    modelio::check_exportable(spec.input_shape, spec.layers);
}

} // namespace troupe::actors

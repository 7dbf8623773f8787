#pragma once
/// \file The model a run trained, as a file: what `troupe run --save` and
/// graph::save write. CAF-free.
#include "actors/job_spec.hpp"
#include "actors/run.hpp"
#include "modelio/onnx_model.hpp"

#include <string>

namespace troupe::actors {

/// The trained model of a finished run of spec (as given to run_job).
modelio::trained_model trained_model_of(const job_spec& spec,
                                        const run_result& r);

/// Throws modelio::model_error (its text names the layer) when spec's
/// model could not be saved as ONNX: checked before training.
void check_savable(const job_spec& spec);

} // namespace troupe::actors

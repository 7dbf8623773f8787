#pragma once
/// \file Trained models as ONNX files, written and read through the ONNX
/// library (onnx::ModelProto, its checker and shape inference).
///
/// A troupe model file is a standard ONNX model (IR 8, opset 17) whose
/// graph maps troupe's layers to standard ops:
///   dense       -> Gemm (B = weights [in, out], transB = 0), after a
///                  Flatten when its input is an image;
///   conv2d      -> Conv (W [out, in, k, k], square kernel, equal pads);
///   max_pool2d  -> MaxPool; avg_pool2d -> AveragePool
///                  (count_include_pad = 1, troupe's rule);
///   flatten     -> Flatten (axis 1);
///   relu, sigmoid, tanh -> Relu, Sigmoid, Tanh; softmax -> Softmax (axis 1);
///   batch_norm  -> BatchNormalization in inference form (the running
///                  statistics as mean and var);
///   layer_norm  -> LayerNormalization (axis 1: over each whole sample);
///   dropout     -> nothing (inference).
/// Graph input "input": [N, ...data.shape], the samples after troupe's own
/// input scaling (IDX bytes / 255; CSV values as they are). Graph output
/// "output": logits for classification, values for regression.
/// Metadata (metadata_props, keys "troupe.*") keeps what ONNX has no place
/// for: the loss, classes and their labels, the digest of the parameters,
/// the job and the epoch the parameters are from.
///
/// Reading accepts these ops (Gemm with transB 0 or 1; Dropout and Identity
/// as no-ops) in one chain from the input to the output, float32 only, and
/// refuses anything else naming the node and op.
#include "devices/nn/layers.hpp"
#include "devices/tensor.hpp"

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::modelio {

/// A model file that cannot be written, read or run; what() names the file
/// and says what is wrong.
class model_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A trained model: the layers, the input they see and their parameters in
/// troupe's flattened layout (devices::nn::param_layout).
struct trained_model {
  devices::shape_t input; ///< per sample
  std::vector<devices::nn::layer_spec> layers;
  devices::nn::loss_spec loss;
  std::vector<float> params;
  std::int64_t classes = 0; ///< 0: regression
  /// Class names, by class index (CSV string labels); empty: the classes
  /// are their indices.
  std::vector<std::string> labels;
  std::string input_format = "idx"; ///< idx | csv: how samples are read
  std::string job;                  ///< the job that trained it
  std::int64_t epoch = 0;           ///< whose parameters (0: unknown)
  std::string params_digest;        ///< SHA-256 of params, as run prints
  /// Other metadata found in a file (keys without the "troupe." prefix
  /// that troupe does not read itself are kept here as they are).
  std::map<std::string, std::string> extra;
};

/// Throws model_error (naming layer i) when layers has one with no ONNX
/// form for this input. Every troupe layer has one today; called before a
/// job trains, so a model that could not be saved fails then, not after.
void check_exportable(const devices::shape_t& input,
                      const std::vector<devices::nn::layer_spec>& layers);

/// Writes m to path as ONNX, atomically (a temporary file renamed over
/// it): a failure leaves what was there. Runs the ONNX checker on the model
/// first. Throws model_error.
void save_onnx(const trained_model& m, const std::string& path);

/// Reads an ONNX file (one written by save_onnx, or any model in the form
/// above). Throws model_error naming the file: missing, not ONNX, refused
/// by the ONNX checker, an op troupe cannot run, shapes that do not fit.
trained_model load_onnx(const std::string& path);

/// What an ONNX file holds, for `troupe inspect`: one line per fact.
struct onnx_summary {
  std::int64_t ir_version = 0;
  std::int64_t opset = 0;
  std::string producer;
  std::vector<std::string> ops; ///< node op types, in order
};
onnx_summary summarize_onnx(const std::string& path);

} // namespace troupe::modelio

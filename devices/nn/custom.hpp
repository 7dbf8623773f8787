#pragma once
/// \file Custom layers: a user's own layer type, registered by name from C++
/// and placed in a model like the built-in ones (`{ type = "prelu" }` in
/// model.layers). A layer says its output shape and its parameters for an
/// input shape, and computes forward and backward on host memory (CPU
/// workers); it may say how it is written to ONNX. Plugins register them
/// (actors/stages.hpp, `--plugin`). Also the settings class that custom
/// stages and layers read their pipeline keys with.
#include "devices/nn/layers.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace troupe::devices::nn {

/// A custom layer's or stage's settings: the keys of its pipeline table
/// other than `type`, each value as text. Every accessor names the key
/// (e.g. "stage[0].pad", "layers[2].slope") in what it throws
/// (std::invalid_argument); a key no accessor read is an error after the
/// layer or stage is made.
class settings {
public:
  settings() = default;
  settings(std::string where, std::map<std::string, std::string> values);

  double number(const std::string& key, double fallback, double min,
                double max) const;
  std::int64_t integer(const std::string& key, std::int64_t fallback,
                       std::int64_t min, std::int64_t max) const;
  bool flag(const std::string& key, bool fallback) const;
  std::string text(const std::string& key, const std::string& fallback) const;

  /// "stage[0]", "controller", "layers[2]": what error messages name.
  const std::string& where() const { return where_; }
  const std::map<std::string, std::string>& values() const { return values_; }
  /// Keys present that no accessor read.
  std::vector<std::string> unread() const;
  /// Throws std::invalid_argument for the first unread key of `type`.
  void check_all_read(const std::string& type) const;

private:
  const std::string* find(const std::string& key) const;
  [[noreturn]] void fail(const std::string& key, const std::string& why) const;

  std::string where_;
  std::map<std::string, std::string> values_;
  mutable std::set<std::string> read_;
};

/// One parameter tensor of a custom layer, [rows, cols], in the flattened
/// parameter vector after the layer's earlier ones.
struct custom_param {
  std::string name; ///< "slope": the block is "TYPE<i>.slope"
  std::int64_t rows = 1;
  std::int64_t cols = 1;
  /// weight, bias: uniform(+-1/sqrt(fan_in)); scale: 1; shift: 0; fill:
  /// `value`.
  param_role role = param_role::weight;
  std::int64_t fan_in = 1;
  float value = 0;
};

/// What a custom layer's ONNX node is: one node of `op_type` (in `domain`,
/// "" for the standard one) taking the layer's input then its parameters
/// (as initializers, each shaped `param_shapes[k]`, or [rows, cols] when
/// empty), with these attributes.
struct custom_onnx {
  std::string op_type;
  std::string domain;
  std::map<std::string, std::int64_t> int_attributes;
  std::map<std::string, float> float_attributes;
  std::vector<std::vector<std::int64_t>> param_shapes;
};

/// A user's layer. One instance per layer of a model, made for its settings.
class custom_layer {
public:
  virtual ~custom_layer() = default;
  /// The per-sample output shape for the per-sample input shape `in`;
  /// throws std::invalid_argument when `in` does not fit.
  virtual shape_t output_shape(const shape_t& in) const = 0;
  /// Its parameters for input `in`, in order (none by default).
  virtual std::vector<custom_param> params(const shape_t& in) const {
    return {};
  }
  /// y [batch, numel(out)] from x [batch, numel(in)]; p: its parameters,
  /// each rows * cols values in the order params() gave. `training`: a
  /// training pass (else inference). Host memory.
  virtual void forward(const float* x, float* y, std::int64_t batch,
                       const shape_t& in, const std::vector<const float*>& p,
                       bool training) const = 0;
  /// From dy (the gradient w.r.t. y) writes dx (null for the first layer:
  /// not needed) and every element of each dp (the gradient w.r.t. the
  /// parameters, summed over the batch). x and y are the forward pass's.
  virtual void backward(const float* x, const float* y, const float* dy,
                        float* dx, std::int64_t batch, const shape_t& in,
                        const std::vector<const float*>& p,
                        const std::vector<float*>& dp) const = 0;
  /// Its ONNX node for input `in`; none (the default): a model with it
  /// cannot be saved as ONNX.
  virtual std::optional<custom_onnx> onnx(const shape_t& in) const {
    return std::nullopt;
  }
};

using layer_factory =
    std::function<std::unique_ptr<custom_layer>(const settings&)>;

/// Registers a layer type by name (letters, digits, '_', '-'; at most 64;
/// not a built-in layer's). Throws std::invalid_argument for a bad or taken
/// name.
void register_layer(const std::string& type, layer_factory make);
bool has_layer(const std::string& type);
std::vector<std::string> layer_types();
/// Makes the custom layer of spec (kind custom). Throws
/// std::invalid_argument naming spec's place for an unknown type, bad
/// settings or settings it did not read.
std::shared_ptr<const custom_layer> make_layer(const layer_spec& spec,
                                               const std::string& where);

/// Shared by the registries of layers, stages and controllers: a type
/// name's rules, and the message for an unknown one (the closest known
/// name, the known ones, where types come from).
void check_type_name(const std::string& type);
[[noreturn]] void unknown_type(const std::string& what,
                               const std::string& where,
                               const std::string& type,
                               const std::vector<std::string>& known);

} // namespace troupe::devices::nn

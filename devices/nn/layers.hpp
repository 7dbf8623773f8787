#pragma once
/// \file Layer and loss descriptions shared by the model and the pipeline.
#include "devices/device.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::devices::nn {

enum class layer_kind : std::uint8_t {
  dense,
  relu,
  sigmoid,
  tanh,
  softmax,
  conv2d,
  max_pool2d,
  avg_pool2d,
  flatten,
  dropout,
  batch_norm,
  layer_norm,
  custom, ///< a registered layer (devices/nn/custom.hpp), by `custom`
};

/// One layer of a sequential model. Which fields a kind reads:
/// - dense: units;
/// - conv2d: units (output channels), kernel, stride, padding, in_channels
///   (0: taken from the input; else checked against it);
/// - max_pool2d, avg_pool2d: kernel, stride, padding;
/// - dropout: rate;
/// - batch_norm: eps, momentum (PyTorch's meaning: weight of the batch);
/// - layer_norm: eps;
/// - custom: custom, settings.
struct layer_spec {
  layer_kind kind = layer_kind::dense;
  std::int64_t units = 0;
  std::int64_t kernel = 0;
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  std::int64_t in_channels = 0;
  float rate = 0.5f;
  float eps = 1e-5f;
  float momentum = 0.1f;
  std::string custom{}; ///< custom: the registered type
  std::map<std::string, std::string> settings{}; ///< custom: its settings
};

/// Loss and its parameter.
struct loss_spec {
  loss_kind kind = loss_kind::cross_entropy;
  float huber_delta = 1.0f;
};

/// "dense", "relu", ... ; nullopt for an unknown name.
std::optional<layer_kind> parse_layer_kind(std::string_view name);
const char* to_string(layer_kind k);
/// Every layer name, for messages: "dense, relu, ...".
std::string layer_kind_names();
std::optional<loss_kind> parse_loss_kind(std::string_view name);
const char* to_string(loss_kind k);
std::optional<optimizer_kind> parse_optimizer_kind(std::string_view name);
const char* to_string(optimizer_kind k);

/// A model's layers do not fit the shape they are given; what() names the
/// layer as "layers[i] (kind)", the shapes and the cause.
class shape_error : public std::invalid_argument {
public:
  using std::invalid_argument::invalid_argument;
};

/// The per-sample shape after each layer, given the per-sample input shape
/// ([features] or [channels, height, width]). Throws shape_error.
std::vector<shape_t> infer_shapes(const shape_t& input,
                                  const std::vector<layer_spec>& layers);

/// What a parameter block is, which decides its initial value and how the
/// param shard updates it.
enum class param_role : std::uint8_t {
  weight,  ///< dense or conv weight: uniform(+-1/sqrt(fan_in))
  bias,    ///< dense or conv bias: the same bound
  scale,   ///< normalization gamma: 1
  shift,   ///< normalization beta: 0
  running, ///< batch-norm running statistics [2, C]: mean 0, variance 1
  fill,    ///< a custom layer's: every element `value`
};

/// Where one parameter tensor lives in the flattened parameter vector.
struct param_block {
  std::string name;        ///< e.g. "dense0.weight"
  std::int64_t offset = 0; ///< first element in the flattened vector
  std::int64_t rows = 0;   ///< dense weight: fan_in; conv weight: out channels
  std::int64_t cols = 0;   ///< dense: fan_out; conv: in channels * kernel area
  std::int64_t fan_in = 0;
  param_role role = param_role::weight;
  /// Dense weights are used in row blocks (row_blocks); every other block
  /// is used whole.
  bool row_blocked = false;
  float momentum = 0; ///< running: the batch_norm layer's momentum
  float value = 0;    ///< fill: the initial value
  std::int64_t size() const { return rows * cols; }
};

/// The flattened parameter layout of a sequential model, in layer order:
/// dense and conv2d a weight then a bias; batch_norm its scale, shift and
/// running statistics; layer_norm its scale and shift.
std::vector<param_block> param_layout(const shape_t& input,
                                      const std::vector<layer_spec>& layers);
/// param_layout for a flat input of `inputs` features.
std::vector<param_block> param_layout(std::int64_t inputs,
                                      const std::vector<layer_spec>& layers);

/// How a dense layer's [rows, cols] weights are used, in blocks of whole
/// rows of about 32 Ki elements (small enough to arrive well before the
/// whole set, large enough for sgemm to run at speed): the first row of
/// each block, then rows. Fixed by the shape alone, so every placement
/// computes the same sums.
std::vector<std::int64_t> row_blocks(std::int64_t rows, std::int64_t cols);

/// Every offset in the flattened vector where a weight row block or a
/// whole block starts, ascending: the places where param shards can split
/// without cutting a piece the forward pass uses whole.
std::vector<std::int64_t> block_starts(const std::vector<param_block>& layout);

/// Total parameters of the layout.
std::int64_t param_count(const std::vector<param_block>& layout);

/// Initial value of flattened parameters [first, first + n) into out: a pure
/// function of (seed, element index), so any split over shards gives the same
/// values. Weights and biases uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)),
/// PyTorch's Linear and Conv2d default; normalization as param_role says.
void init_params(const std::vector<param_block>& layout, std::uint64_t seed,
                 std::int64_t first, std::int64_t n, float* out);

/// The running-statistics update of batch_norm blocks, done by the param
/// shard in place of the optimizer, element by element: out = (1 -
/// momentum) old + momentum batch, PyTorch's rule. `batch` is what the
/// workers sent for the block, summed in the canonical order: each
/// worker's share (its samples over the global batch) of its batch mean
/// (row 0) and of its unbiased batch variance (row 1).
void update_running_stats(float momentum, std::int64_t n,
                          const float* old_values, const float* batch,
                          float* out);

} // namespace troupe::devices::nn

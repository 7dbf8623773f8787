#pragma once
/// \file Layer and loss descriptions shared by the model and the pipeline.
#include "devices/device.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::devices::nn {

enum class layer_kind : std::uint8_t { dense, relu, sigmoid, tanh, softmax };

/// One layer of a sequential model; units is used by dense only.
struct layer_spec {
  layer_kind kind = layer_kind::dense;
  std::int64_t units = 0;
};

/// Loss and its parameter.
struct loss_spec {
  loss_kind kind = loss_kind::cross_entropy;
  float huber_delta = 1.0f;
};

/// "dense", "relu", ... ; nullopt for an unknown name.
std::optional<layer_kind> parse_layer_kind(std::string_view name);
const char* to_string(layer_kind k);
std::optional<loss_kind> parse_loss_kind(std::string_view name);
const char* to_string(loss_kind k);
std::optional<optimizer_kind> parse_optimizer_kind(std::string_view name);
const char* to_string(optimizer_kind k);

/// Where one parameter tensor lives in the flattened parameter vector.
struct param_block {
  std::string name;        ///< e.g. "dense0.weight"
  std::int64_t offset = 0; ///< first element in the flattened vector
  std::int64_t rows = 0;   ///< weight: fan_in; bias: 1
  std::int64_t cols = 0;   ///< fan_out
  std::int64_t fan_in = 0;
  std::int64_t size() const { return rows * cols; }
};

/// The flattened parameter layout of a sequential model: for each dense
/// layer its weight [in, out] then its bias [out], in layer order.
std::vector<param_block> param_layout(std::int64_t inputs,
                                      const std::vector<layer_spec>& layers);

/// How a dense layer's [rows, cols] weights are used, in blocks of whole
/// rows of about 32 Ki elements (small enough to arrive well before the
/// whole set, large enough for sgemm to run at speed): the first row of
/// each block, then rows. Fixed by the shape alone, so every placement
/// computes the same sums.
std::vector<std::int64_t> row_blocks(std::int64_t rows, std::int64_t cols);

/// Every offset in the flattened vector where a weight row block or a bias
/// starts, ascending: the places where param shards can split without
/// cutting a piece the forward pass uses whole.
std::vector<std::int64_t> block_starts(const std::vector<param_block>& layout);

/// Total parameters of the layout.
std::int64_t param_count(const std::vector<param_block>& layout);

/// Initial value of flattened parameters [first, first + n) into out: a pure
/// function of (seed, element index), so any split over shards gives the same
/// values. Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's Linear default.
void init_params(const std::vector<param_block>& layout, std::uint64_t seed,
                 std::int64_t first, std::int64_t n, float* out);

} // namespace troupe::devices::nn

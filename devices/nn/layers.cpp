#include "devices/nn/layers.hpp"

#include "devices/check.hpp"
#include "devices/random.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace troupe::devices::nn {

std::optional<layer_kind> parse_layer_kind(std::string_view name) {
  if (name == "dense")
    return layer_kind::dense;
  if (name == "relu")
    return layer_kind::relu;
  if (name == "sigmoid")
    return layer_kind::sigmoid;
  if (name == "tanh")
    return layer_kind::tanh;
  if (name == "softmax")
    return layer_kind::softmax;
  return std::nullopt;
}

const char* to_string(layer_kind k) {
  switch (k) {
    case layer_kind::dense:
      return "dense";
    case layer_kind::relu:
      return "relu";
    case layer_kind::sigmoid:
      return "sigmoid";
    case layer_kind::tanh:
      return "tanh";
    case layer_kind::softmax:
      return "softmax";
  }
  return "?";
}

std::optional<loss_kind> parse_loss_kind(std::string_view name) {
  if (name == "cross_entropy")
    return loss_kind::cross_entropy;
  if (name == "mse")
    return loss_kind::mse;
  if (name == "huber")
    return loss_kind::huber;
  return std::nullopt;
}

const char* to_string(loss_kind k) {
  switch (k) {
    case loss_kind::cross_entropy:
      return "cross_entropy";
    case loss_kind::mse:
      return "mse";
    case loss_kind::huber:
      return "huber";
  }
  return "?";
}

std::optional<optimizer_kind> parse_optimizer_kind(std::string_view name) {
  if (name == "sgd")
    return optimizer_kind::sgd;
  if (name == "momentum")
    return optimizer_kind::momentum;
  if (name == "nesterov")
    return optimizer_kind::nesterov;
  if (name == "adam")
    return optimizer_kind::adam;
  return std::nullopt;
}

const char* to_string(optimizer_kind k) {
  switch (k) {
    case optimizer_kind::sgd:
      return "sgd";
    case optimizer_kind::momentum:
      return "momentum";
    case optimizer_kind::nesterov:
      return "nesterov";
    case optimizer_kind::adam:
      return "adam";
  }
  return "?";
}

std::vector<param_block> param_layout(std::int64_t inputs,
                                      const std::vector<layer_spec>& layers) {
  std::vector<param_block> out;
  std::int64_t width = inputs;
  std::int64_t offset = 0;
  int dense_index = 0;
  for (const auto& l : layers) {
    if (l.kind != layer_kind::dense)
      continue;
    param_block w{fmt::format("dense{}.weight", dense_index), offset, width,
                  l.units, width};
    offset += w.size();
    param_block b{fmt::format("dense{}.bias", dense_index), offset, 1, l.units,
                  width};
    offset += b.size();
    out.push_back(std::move(w));
    out.push_back(std::move(b));
    width = l.units;
    ++dense_index;
  }
  return out;
}

std::vector<std::int64_t> row_blocks(std::int64_t rows, std::int64_t cols) {
  constexpr std::int64_t block_elements = 1 << 15;
  const auto blocks = std::clamp<std::int64_t>(
      (rows * cols + block_elements - 1) / block_elements, 1, rows);
  const auto per = (rows + blocks - 1) / blocks;
  std::vector<std::int64_t> start;
  for (std::int64_t r = 0; r < rows; r += per)
    start.push_back(r);
  start.push_back(rows);
  return start;
}

std::vector<std::int64_t> block_starts(const std::vector<param_block>& layout) {
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < layout.size(); ++i) {
    const auto& b = layout[i];
    if (i % 2 == 1) { // a bias
      out.push_back(b.offset);
      continue;
    }
    const auto rows = row_blocks(b.rows, b.cols);
    for (std::size_t k = 0; k + 1 < rows.size(); ++k)
      out.push_back(b.offset + rows[k] * b.cols);
  }
  return out;
}

std::int64_t param_count(const std::vector<param_block>& layout) {
  return layout.empty() ? 0 : layout.back().offset + layout.back().size();
}

void init_params(const std::vector<param_block>& layout, std::uint64_t seed,
                 std::int64_t first, std::int64_t n, float* out) {
  const std::int64_t last = first + n;
  TROUPE_CHECK(first >= 0 && last <= param_count(layout),
               "init_params range outside the parameters");
  for (const auto& blk : layout) {
    const auto lo = std::max(first, blk.offset);
    const auto hi = std::min(last, blk.offset + blk.size());
    if (lo >= hi)
      continue;
    const float bound =
        1.0f /
        std::sqrt(static_cast<float>(std::max<std::int64_t>(blk.fan_in, 1)));
    for (auto i = lo; i < hi; ++i) {
      const float u = unit_float(seed, static_cast<std::uint64_t>(i));
      out[i - first] = bound * (2.0f * u - 1.0f);
    }
  }
}

} // namespace troupe::devices::nn

#include "devices/nn/layers.hpp"
#include "devices/nn/custom.hpp"

#include "devices/check.hpp"
#include "devices/random.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace troupe::devices::nn {

namespace {

struct layer_name {
  layer_kind kind;
  const char* name;
};

constexpr layer_name layer_names[] = {
    {layer_kind::dense, "dense"},
    {layer_kind::relu, "relu"},
    {layer_kind::sigmoid, "sigmoid"},
    {layer_kind::tanh, "tanh"},
    {layer_kind::softmax, "softmax"},
    {layer_kind::conv2d, "conv2d"},
    {layer_kind::max_pool2d, "max_pool2d"},
    {layer_kind::avg_pool2d, "avg_pool2d"},
    {layer_kind::flatten, "flatten"},
    {layer_kind::dropout, "dropout"},
    {layer_kind::batch_norm, "batch_norm"},
    {layer_kind::layer_norm, "layer_norm"},
};

} // namespace

std::optional<layer_kind> parse_layer_kind(std::string_view name) {
  for (const auto& l : layer_names)
    if (name == l.name)
      return l.kind;
  return std::nullopt;
}

const char* to_string(layer_kind k) {
  for (const auto& l : layer_names)
    if (k == l.kind)
      return l.name;
  return k == layer_kind::custom ? "custom" : "?";
}

std::string layer_kind_names() {
  std::string out;
  for (const auto& l : layer_names) {
    if (!out.empty())
      out += ", ";
    out += l.name;
  }
  return out;
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
  if (name == "adamw")
    return optimizer_kind::adamw;
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
    case optimizer_kind::adamw:
      return "adamw";
  }
  return "?";
}

namespace {

// "layers[3] (max_pool2d)": how messages name a layer.
std::string layer_name_at(std::size_t i, const layer_spec& l) {
  return fmt::format("layers[{}] ({})", i,
                     l.kind == layer_kind::custom ? l.custom.c_str()
                                                  : to_string(l.kind));
}

// A custom layer of `layers`, made for a message-naming place.
std::shared_ptr<const custom_layer> custom_at(std::size_t i,
                                              const layer_spec& l) {
  try {
    return make_layer(l, fmt::format("layers[{}]", i));
  } catch (const std::invalid_argument& e) {
    throw shape_error(e.what());
  }
}

// Output size of a window of `k` moved by `s` over `n` padded by `p` on
// both sides; 0 or less when nothing fits.
std::int64_t window_out(std::int64_t n, std::int64_t k, std::int64_t s,
                        std::int64_t p) {
  return (n + 2 * p - k) / s + 1;
}

} // namespace

std::vector<shape_t> infer_shapes(const shape_t& input,
                                  const std::vector<layer_spec>& layers) {
  auto fail = [&](std::size_t i, const layer_spec& l, const std::string& why) {
    throw shape_error(fmt::format("{}: {}", layer_name_at(i, l), why));
  };
  if (input.empty() || numel_of(input) <= 0)
    throw shape_error(fmt::format("input shape {} holds no values",
                                  devices::to_string(input)));
  std::vector<shape_t> out;
  shape_t x = input;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    switch (l.kind) {
      case layer_kind::dense:
        if (l.units <= 0)
          fail(i, l, "needs units > 0");
        x = {l.units}; // a [C, H, W] input is flattened, as by flatten
        break;
      case layer_kind::relu:
      case layer_kind::sigmoid:
      case layer_kind::tanh:
      case layer_kind::softmax:
      case layer_kind::layer_norm:
        break;
      case layer_kind::dropout:
        if (!(l.rate >= 0.0f && l.rate < 1.0f))
          fail(i, l, fmt::format("rate {} is outside [0, 1)", l.rate));
        break;
      case layer_kind::flatten:
        x = {numel_of(x)};
        break;
      case layer_kind::batch_norm:
        if (x.size() != 1 && x.size() != 3)
          fail(i, l,
               fmt::format("needs a [features] or [channels, height, width] "
                           "input, got {}",
                           devices::to_string(x)));
        if (!(l.momentum >= 0.0f && l.momentum <= 1.0f))
          fail(i, l, fmt::format("momentum {} is outside [0, 1]", l.momentum));
        break;
      case layer_kind::conv2d:
      case layer_kind::max_pool2d:
      case layer_kind::avg_pool2d: {
        const bool conv = l.kind == layer_kind::conv2d;
        if (x.size() != 3)
          fail(i, l,
               fmt::format("needs an image input [channels, height, width], "
                           "got {}; set data.shape or put it before any "
                           "flatten or dense layer",
                           devices::to_string(x)));
        if (conv && l.units <= 0)
          fail(i, l, "needs channels > 0");
        if (conv && l.in_channels > 0 && l.in_channels != x[0])
          fail(i, l,
               fmt::format("in_channels = {} but its input {} has {} "
                           "channel(s)",
                           l.in_channels, devices::to_string(x), x[0]));
        if (l.kernel <= 0 || l.stride <= 0 || l.padding < 0)
          fail(i, l, "needs kernel > 0, stride > 0 and padding >= 0");
        if (!conv && 2 * l.padding > l.kernel)
          fail(i, l,
               fmt::format("padding {} is more than half the kernel {}",
                           l.padding, l.kernel));
        const auto h = window_out(x[1], l.kernel, l.stride, l.padding);
        const auto w = window_out(x[2], l.kernel, l.stride, l.padding);
        if (x[1] + 2 * l.padding < l.kernel || x[2] + 2 * l.padding < l.kernel)
          fail(i, l,
               fmt::format("its {}x{} kernel is larger than its input {} "
                           "padded by {}",
                           l.kernel, l.kernel, devices::to_string(x),
                           l.padding));
        if (h <= 0 || w <= 0)
          fail(i, l,
               fmt::format("leaves nothing of its input {}",
                           devices::to_string(x)));
        x = {conv ? l.units : x[0], h, w};
        break;
      }
      case layer_kind::custom: {
        const auto layer = custom_at(i, l);
        try {
          auto y = layer->output_shape(x);
          if (y.empty() || numel_of(y) <= 0)
            fail(i, l,
                 fmt::format("its output shape {} for input {} holds no "
                             "values",
                             devices::to_string(y), devices::to_string(x)));
          x = std::move(y);
        } catch (const std::invalid_argument& e) {
          if (dynamic_cast<const shape_error*>(&e) != nullptr)
            throw;
          fail(i, l, e.what());
        }
        break;
      }
    }
    out.push_back(x);
  }
  return out;
}

std::vector<param_block> param_layout(const shape_t& input,
                                      const std::vector<layer_spec>& layers) {
  const auto shapes = infer_shapes(input, layers);
  std::vector<param_block> out;
  std::int64_t offset = 0;
  int dense = 0, conv = 0, bn = 0, ln = 0;
  auto add = [&](std::string name, std::int64_t rows, std::int64_t cols,
                 std::int64_t fan_in, param_role role, bool row_blocked) {
    param_block b{std::move(name), offset, rows,       cols,
                  fan_in,          role,   row_blocked};
    offset += b.size();
    out.push_back(std::move(b));
  };
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    const auto& in = i == 0 ? input : shapes[i - 1];
    switch (l.kind) {
      case layer_kind::dense: {
        const auto width = numel_of(in);
        add(fmt::format("dense{}.weight", dense), width, l.units, width,
            param_role::weight, true);
        add(fmt::format("dense{}.bias", dense), 1, l.units, width,
            param_role::bias, false);
        ++dense;
        break;
      }
      case layer_kind::conv2d: {
        const auto fan_in = in[0] * l.kernel * l.kernel;
        add(fmt::format("conv{}.weight", conv), l.units, fan_in, fan_in,
            param_role::weight, false);
        add(fmt::format("conv{}.bias", conv), 1, l.units, fan_in,
            param_role::bias, false);
        ++conv;
        break;
      }
      case layer_kind::batch_norm: {
        const auto c = in[0];
        add(fmt::format("bn{}.weight", bn), 1, c, 0, param_role::scale, false);
        add(fmt::format("bn{}.bias", bn), 1, c, 0, param_role::shift, false);
        add(fmt::format("bn{}.running", bn), 2, c, 0, param_role::running,
            false);
        out.back().momentum = l.momentum;
        ++bn;
        break;
      }
      case layer_kind::layer_norm: {
        const auto d = numel_of(in);
        add(fmt::format("ln{}.weight", ln), 1, d, 0, param_role::scale, false);
        add(fmt::format("ln{}.bias", ln), 1, d, 0, param_role::shift, false);
        ++ln;
        break;
      }
      case layer_kind::custom: {
        const auto layer = custom_at(i, l);
        for (const auto& p : layer->params(in)) {
          if (p.rows <= 0 || p.cols <= 0)
            throw shape_error(
                fmt::format("{}: parameter {} is [{}, {}]; both must be > 0",
                            layer_name_at(i, l), p.name, p.rows, p.cols));
          add(fmt::format("{}{}.{}", l.custom, i, p.name), p.rows, p.cols,
              p.fan_in, p.role, false);
          out.back().value = p.value;
        }
        break;
      }
      default:
        break;
    }
  }
  return out;
}

std::vector<param_block> param_layout(std::int64_t inputs,
                                      const std::vector<layer_spec>& layers) {
  return param_layout(shape_t{inputs}, layers);
}

std::vector<std::int64_t> row_blocks(std::int64_t rows, std::int64_t cols) {
  constexpr std::int64_t block_elements = 1 << 15;
  // At least 256 rows a block: each block is a gemm whose inner dimension
  // is its row count, and its product one more [batch, cols] buffer to sum.
  // With 32 rows (784-1024-1024-10 at batch 512) the sums and the thin
  // gemms cost 17% of the step.
  constexpr std::int64_t min_rows = 256;
  const auto blocks = std::clamp<std::int64_t>(
      (rows * cols + block_elements - 1) / block_elements, 1,
      std::max<std::int64_t>(1, rows / min_rows));
  const auto per = (rows + blocks - 1) / blocks;
  std::vector<std::int64_t> start;
  for (std::int64_t r = 0; r < rows; r += per)
    start.push_back(r);
  start.push_back(rows);
  return start;
}

std::vector<std::int64_t> block_starts(const std::vector<param_block>& layout) {
  std::vector<std::int64_t> out;
  for (const auto& b : layout) {
    if (!b.row_blocked) {
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
    switch (blk.role) {
      case param_role::weight:
      case param_role::bias: {
        const float bound = 1.0f / std::sqrt(static_cast<float>(
                                       std::max<std::int64_t>(blk.fan_in, 1)));
        for (auto i = lo; i < hi; ++i) {
          const float u = unit_float(seed, static_cast<std::uint64_t>(i));
          out[i - first] = bound * (2.0f * u - 1.0f);
        }
        break;
      }
      case param_role::scale:
        std::fill(out + (lo - first), out + (hi - first), 1.0f);
        break;
      case param_role::shift:
        std::fill(out + (lo - first), out + (hi - first), 0.0f);
        break;
      case param_role::fill:
        std::fill(out + (lo - first), out + (hi - first), blk.value);
        break;
      case param_role::running:
        // Row 0 the running mean (0), row 1 the running variance (1).
        for (auto i = lo; i < hi; ++i)
          out[i - first] = i - blk.offset < blk.cols ? 0.0f : 1.0f;
        break;
    }
  }
}

void update_running_stats(float momentum, std::int64_t n,
                          const float* old_values, const float* batch,
                          float* out) {
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = (1.0f - momentum) * old_values[i] + momentum * batch[i];
}

} // namespace troupe::devices::nn

// A plugin of custom stages (actors/stages.hpp), loaded with
//   troupe run --plugin build/lib/libtroupe_example_stages.so PIPELINE
// (local nodes load it too; a `troupe node` elsewhere takes the same
// --plugin). It registers:
//
// - random_crop_flip, a data stage: each image is shifted by up to `pad`
//   pixels in each direction (what falls outside is zero, as a crop of a
//   zero-padded image) and, with `flip`, mirrored left to right with
//   probability 1/2. The draws are a function of (seed, epoch, step, worker,
//   sample), so a restarted stage, or one on another node, makes the same
//   batch.
// - shuffle_buffer, a data stage that keeps state: each sample is, with
//   probability `fraction`, replaced by the one at its place in the
//   worker's batch before (with its label).
// - plateau, a controller: lr-on-plateau and early stopping on a monitored
//   figure (test_loss, train_loss, test_accuracy, or the name of a
//   [[metric]], lower better unless `maximize`). After `patience` epochs
//   without an improvement of more than `min_delta` it scales the lr by
//   `factor`; after `stop_patience` (0: never) it stops the job, keeping
//   the parameters of that epoch. With `save_best` it asks for each epoch
//   that improved the figure to be kept (troupe run --save FILE writes
//   FILE.epoch-E.onnx). With `max_loss` (0: off) it stops the job after the
//   epoch in which the recent train loss went above it, or became NaN.
// - top_k, a metric: the share of test samples whose class is among the
//   model's `k` highest outputs.
// - prelu, a layer: y = x where x > 0, else slope * x, with one learned
//   slope per channel (per feature for flat input), starting at `init`
//   (PyTorch's PReLU); written to ONNX as PRelu.
#include "actors/stages.hpp"
#include "devices/nn/custom.hpp"

#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using troupe::stages::batch_context;
using troupe::stages::params;
using troupe::stages::sample_info;

class random_crop_flip final : public troupe::stages::data_stage {
public:
  random_crop_flip(const params& p, const sample_info& s)
    : pad_(p.integer("pad", 2, 0, 64))
    , flip_(p.flag("flip", true)) {
    // Made once without the data (to check the settings), then with it.
    if (s.features == 0)
      return;
    if (s.shape.size() != 3)
      throw std::invalid_argument(
          p.where() +
          ": random_crop_flip needs images: data.shape [C, H, W] "
          "(this data is " +
          std::to_string(s.shape.size()) + "-dimensional)");
    channels_ = s.shape[0];
    height_ = s.shape[1];
    width_ = s.shape[2];
  }

  void transform(troupe::devices::tensor& x, troupe::devices::tensor&,
                 const batch_context& c) override {
    const auto n = x.dim(0);
    const auto plane = height_ * width_;
    const auto per = channels_ * plane;
    const auto span = static_cast<std::uint64_t>(2 * pad_ + 1);
    std::vector<float> in(static_cast<std::size_t>(per));
    for (std::int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::uint64_t>(i) * 3;
      const auto dy = static_cast<std::int64_t>(c.below(k, span)) - pad_;
      const auto dx = static_cast<std::int64_t>(c.below(k + 1, span)) - pad_;
      const bool mirror = flip_ && c.uniform(k + 2) < 0.5f;
      float* sample = x.data() + i * per;
      std::copy(sample, sample + per, in.begin());
      for (std::int64_t ch = 0; ch < channels_; ++ch)
        for (std::int64_t y = 0; y < height_; ++y)
          for (std::int64_t xo = 0; xo < width_; ++xo) {
            const auto sy = y + dy;
            const auto sx = (mirror ? width_ - 1 - xo : xo) + dx;
            const bool inside =
                sy >= 0 && sy < height_ && sx >= 0 && sx < width_;
            sample[ch * plane + y * width_ + xo] =
                inside ? in[static_cast<std::size_t>(ch * plane + sy * width_ +
                                                     sx)]
                       : 0.0f;
          }
    }
  }

private:
  std::int64_t pad_;
  bool flip_;
  std::int64_t channels_ = 0, height_ = 0, width_ = 0;
};

// Mixes consecutive batches of a worker: each sample is, with probability
// `fraction`, replaced by the sample at the same place in the batch before
// (with its label), as a shuffle buffer that spans batches. The batch
// before is state: a stage that keeps it.
class shuffle_buffer final : public troupe::stages::data_stage {
public:
  shuffle_buffer(const params& p, const sample_info&)
    : fraction_(static_cast<float>(p.number("fraction", 0.5, 0.0, 1.0))) {}

  bool keeps_state() const override { return true; }

  void transform(troupe::devices::tensor& x, troupe::devices::tensor& y,
                 const batch_context& c) override {
    const auto n = x.dim(0);
    const auto fx = n > 0 ? x.numel() / n : 0;
    const auto fy = n > 0 ? y.numel() / n : 0;
    std::vector<float> in_x(x.data(), x.data() + x.numel());
    std::vector<float> in_y(y.data(), y.data() + y.numel());
    for (std::int64_t i = 0; i < n && i < prev_n_; ++i) {
      if (c.uniform(static_cast<std::uint64_t>(i)) >= fraction_)
        continue;
      std::copy_n(prev_x_.begin() + i * fx, fx, x.data() + i * fx);
      std::copy_n(prev_y_.begin() + i * fy, fy, y.data() + i * fy);
    }
    prev_x_ = std::move(in_x);
    prev_y_ = std::move(in_y);
    prev_n_ = n;
  }

private:
  float fraction_;
  std::vector<float> prev_x_, prev_y_; // the batch before, as it came
  std::int64_t prev_n_ = 0;
};

class plateau final : public troupe::stages::controller {
public:
  explicit plateau(const params& p)
    : monitor_(p.text("monitor", "test_loss"))
    , patience_(p.integer("patience", 2, 1, 1000))
    , stop_patience_(p.integer("stop_patience", 0, 0, 1000))
    , factor_(p.number("factor", 0.5, 1e-6, 1.0))
    , min_delta_(p.number("min_delta", 0.0, 0.0, 1e12))
    , maximize_(p.flag("maximize", monitor_ == "test_accuracy"))
    , save_best_(p.flag("save_best", false))
    , max_loss_(p.number("max_loss", 0.0, 0.0, 1e30)) {
    if (monitor_.empty())
      throw std::invalid_argument(p.where() + ".monitor: empty");
  }

  troupe::stages::decision
  on_step(const troupe::stages::step_figures& f) override {
    troupe::stages::decision d;
    if (max_loss_ > 0 && !(f.loss <= max_loss_)) { // NaN too
      d.stop = true;
      d.reason = "train loss " + std::to_string(f.loss) + " above max_loss " +
                 std::to_string(max_loss_);
    }
    return d;
  }

  troupe::stages::decision
  on_epoch(const troupe::stages::epoch_figures& f) override {
    troupe::stages::decision d;
    if (monitor_ != "train_loss" && !f.evaluated)
      return d; // nothing to judge by (no test data)
    const bool maximize = maximize_;
    double v = 0;
    if (monitor_ == "train_loss")
      v = f.train_loss;
    else if (monitor_ == "test_loss")
      v = f.test_loss;
    else if (monitor_ == "test_accuracy")
      v = f.test_accuracy;
    else if (auto it = f.metrics.find(monitor_); it != f.metrics.end())
      v = it->second;
    else
      throw std::invalid_argument(
          "monitor \"" + monitor_ +
          "\" is no figure of the epoch (test_loss, train_loss, "
          "test_accuracy or a [[metric]] name)");
    const bool better = best_epoch_ == 0 || (maximize ? v > best_ + min_delta_
                                                      : v < best_ - min_delta_);
    if (better) {
      best_ = v;
      best_epoch_ = f.epoch;
      since_best_ = 0;
      since_cut_ = 0;
      if (save_best_) {
        d.checkpoint = true;
        d.reason = "the best " + monitor_ + " so far, " + std::to_string(v);
      }
      return d;
    }
    ++since_best_;
    ++since_cut_;
    const auto why = std::to_string(since_best_) + " epoch(s) without a " +
                     (maximize ? "higher " : "lower ") + monitor_ +
                     " than epoch " + std::to_string(best_epoch_) + "'s";
    if (stop_patience_ > 0 && since_best_ >= stop_patience_) {
      d.stop = true;
      d.reason = why;
    } else if (since_cut_ >= patience_) {
      d.lr_scale = factor_;
      d.reason = why;
      since_cut_ = 0;
    }
    return d;
  }

private:
  std::string monitor_;
  std::int64_t patience_, stop_patience_;
  double factor_, min_delta_;
  bool maximize_, save_best_;
  double max_loss_;
  double best_ = 0;
  std::int64_t best_epoch_ = 0;
  std::int64_t since_best_ = 0, since_cut_ = 0;
};

class prelu final : public troupe::devices::nn::custom_layer {
public:
  explicit prelu(const troupe::stages::params& p)
    : init_(static_cast<float>(p.number("init", 0.25, -10, 10))) {}

  troupe::devices::shape_t
  output_shape(const troupe::devices::shape_t& in) const override {
    if (in.size() != 1 && in.size() != 3)
      throw std::invalid_argument(
          "needs a [features] or [channels, height, width] input");
    return in;
  }

  std::vector<troupe::devices::nn::custom_param>
  params(const troupe::devices::shape_t& in) const override {
    troupe::devices::nn::custom_param slope;
    slope.name = "slope";
    slope.cols = in[0];
    slope.role = troupe::devices::nn::param_role::fill;
    slope.value = init_;
    return {slope};
  }

  void forward(const float* x, float* y, std::int64_t batch,
               const troupe::devices::shape_t& in,
               const std::vector<const float*>& p, bool) const override {
    const auto c = in[0];
    const auto spatial = numel(in) / c;
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t k = 0; k < c; ++k)
        for (std::int64_t s = 0; s < spatial; ++s) {
          const auto i = (b * c + k) * spatial + s;
          y[i] = x[i] > 0 ? x[i] : p[0][k] * x[i];
        }
  }

  void backward(const float* x, const float*, const float* dy, float* dx,
                std::int64_t batch, const troupe::devices::shape_t& in,
                const std::vector<const float*>& p,
                const std::vector<float*>& dp) const override {
    const auto c = in[0];
    const auto spatial = numel(in) / c;
    for (std::int64_t k = 0; k < c; ++k) {
      float sum = 0; // over the batch in order: the same on every node
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t s = 0; s < spatial; ++s) {
          const auto i = (b * c + k) * spatial + s;
          if (x[i] <= 0)
            sum += dy[i] * x[i];
          if (dx != nullptr)
            dx[i] = x[i] > 0 ? dy[i] : p[0][k] * dy[i];
        }
      dp[0][k] = sum;
    }
  }

  std::optional<troupe::devices::nn::custom_onnx>
  onnx(const troupe::devices::shape_t& in) const override {
    // PRelu broadcasts the slope from the right: [C, 1, 1] for images.
    troupe::devices::nn::custom_onnx n;
    n.op_type = "PRelu";
    n.param_shapes = {in.size() == 3 ? std::vector<std::int64_t>{in[0], 1, 1}
                                     : std::vector<std::int64_t>{in[0]}};
    return n;
  }

private:
  static std::int64_t numel(const troupe::devices::shape_t& s) {
    std::int64_t n = 1;
    for (auto d : s)
      n *= d;
    return n;
  }
  float init_;
};

class top_k final : public troupe::stages::metric {
public:
  top_k(const params& p, const sample_info& s)
    : k_(p.integer("k", 2, 1, 1000)) {
    // Made once without the data (to check the settings), then with it.
    if (s.features > 0 && s.classes == 0)
      throw std::invalid_argument(p.where() +
                                  ": top_k needs classes (this data set is a "
                                  "regression one)");
  }
  void add(const float* out, const float* target, std::int64_t n,
           std::int64_t outputs) override {
    for (std::int64_t i = 0; i < n; ++i) {
      const auto t = static_cast<std::int64_t>(target[i]);
      const float* row = out + i * outputs;
      // The target is among the k highest when fewer than k outputs beat
      // it (ties count for it).
      std::int64_t higher = 0;
      for (std::int64_t c = 0; c < outputs; ++c)
        higher += row[c] > row[t];
      hits_ += higher < k_;
    }
    seen_ += n;
  }
  double value() const override {
    return seen_ > 0 ? static_cast<double>(hits_) / static_cast<double>(seen_)
                     : 0.0;
  }

private:
  std::int64_t k_;
  std::int64_t hits_ = 0, seen_ = 0;
};

} // namespace

extern "C" void troupe_register_stages() {
  troupe::stages::register_metric("top_k",
                                  [](const params& p, const sample_info& s) {
                                    return std::make_unique<top_k>(p, s);
                                  });
  troupe::devices::nn::register_layer(
      "prelu", [](const params& p) { return std::make_unique<prelu>(p); });
  troupe::stages::register_data_stage(
      "random_crop_flip", [](const params& p, const sample_info& s) {
        return std::make_unique<random_crop_flip>(p, s);
      });
  troupe::stages::register_data_stage(
      "shuffle_buffer", [](const params& p, const sample_info& s) {
        return std::make_unique<shuffle_buffer>(p, s);
      });
  troupe::stages::register_controller(
      "plateau", [](const params& p) { return std::make_unique<plateau>(p); });
}

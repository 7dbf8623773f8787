#pragma once
/// \file The C++ graph API: the same training graph a pipeline file
/// describes, built in code. Every setting goes through the same checks as
/// the pipeline file, so a graph and its TOML twin run identically.
///
///   auto g = troupe::graph("fashion-mnist-mlp")
///                .idx_data(train_images, train_labels, test_images,
///                test_labels) .shards(2).batch(64)
///                .dense(128).relu().dense(10).loss("cross_entropy")
///                (or .conv2d(32, 3, 1, 1).relu().max_pool2d(2).flatten()...)
///                .partitions(2).optimizer("adam", 0.001)
///                .workers(2).epochs(3).seed(42);
///   auto result = g.run();
#include "actors/run.hpp"

#include <map>
#include <optional>

#include <memory>
#include <string>
#include <vector>

namespace troupe {

/// Builder for a training job's actor graph.
class graph {
public:
  explicit graph(std::string name);
  graph(const graph&);
  graph& operator=(const graph&);
  ~graph();

  graph& mode(const std::string& m);
  graph& seed(std::uint64_t s);
  graph& epochs(std::int64_t n);
  /// IDX images + labels for training and (optionally) test.
  graph& idx_data(const std::string& train_images,
                  const std::string& train_labels,
                  const std::string& test_images = "",
                  const std::string& test_labels = "");
  /// CSV files; target is a column name or index ("" = last column);
  /// classes = 0 means regression.
  graph& csv_data(const std::vector<std::string>& train,
                  const std::vector<std::string>& test,
                  const std::string& target, std::int64_t classes);
  graph& shards(std::int64_t n);
  graph& batch(std::int64_t global_batch);
  graph& dense(std::int64_t units);
  graph& relu();
  graph& sigmoid();
  graph& tanh();
  graph& softmax();
  /// 2-D convolution, `channels` filters of kernel x kernel.
  graph& conv2d(std::int64_t channels, std::int64_t kernel,
                std::int64_t stride = 1, std::int64_t padding = 0);
  /// Pooling; stride 0 means the kernel size.
  graph& max_pool2d(std::int64_t kernel, std::int64_t stride = 0,
                    std::int64_t padding = 0);
  graph& avg_pool2d(std::int64_t kernel, std::int64_t stride = 0,
                    std::int64_t padding = 0);
  graph& flatten();
  graph& dropout(double rate);
  graph& batch_norm(double eps = 1e-5, double momentum = 0.1);
  graph& layer_norm(double eps = 1e-5);
  /// A registered custom layer (devices/nn/custom.hpp), e.g.
  /// layer("prelu", {{"init", "0.1"}}).
  graph& layer(const std::string& type,
               const std::map<std::string, std::string>& settings = {});
  /// The per-sample shape the first layer sees (data.shape), e.g. {1, 28,
  /// 28}.
  graph& input_shape(const std::vector<std::int64_t>& shape);
  graph& loss(const std::string& name, double huber_delta = 1.0);
  graph& partitions(std::int64_t n);
  graph& optimizer(const std::string& type, double lr);
  graph& workers(std::int64_t n);
  /// A registered data stage (actors/stages.hpp) after those added before:
  /// [[stage]] with type = `type` and the settings, e.g.
  /// stage("random_crop_flip", {{"pad", "2"}}).
  graph& stage(const std::string& type,
               const std::map<std::string, std::string>& settings = {});
  /// The job's controller ([controller]), a registered type.
  graph& controller(const std::string& type,
                    const std::map<std::string, std::string>& settings = {});
  graph& threads(std::int64_t n);
  /// Any other pipeline key, e.g. set("optimizer.weight_decay", "1e-4");
  /// the value is TOML.
  graph& set(const std::string& key, const std::string& toml_value);

  /// The pipeline as TOML text (what `troupe run` would read).
  std::string to_toml() const;
  /// The checked job; throws runtime::config_error like a pipeline file.
  actors::job_spec spec() const;
  /// Runs the job in this process (see actors::run_job).
  actors::run_result run(const actors::run_observer& observer = {}) const;
  /// Writes the model the last run() trained to `path` as ONNX (what
  /// `troupe run --save` writes). Throws modelio::model_error, or
  /// std::logic_error before any run.
  void save(const std::string& path) const;
  /// The same for the result of a run of this graph.
  void save(const actors::run_result& result, const std::string& path) const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace troupe

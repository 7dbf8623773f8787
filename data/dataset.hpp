#pragma once
/// \file Datasets in memory and the readers that fill them.
#include "devices/tensor.hpp"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::data {

/// Bad input data: the message names the file and what is wrong.
class data_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Where a dataset comes from, as the pipeline's [data] section says.
struct source_spec {
  std::string format = "idx";     ///< "idx" or "csv"
  std::vector<std::string> files; ///< idx: images and labels; csv: one or more
  std::string target;             ///< csv: column name or index; "" = last
  /// csv: > 0 classification; 0 regression; -1 unset: regression for
  /// numeric targets, classification for text labels. idx: -1 (inferred).
  std::int64_t classes = -1;
  /// csv text labels: the class names by index to map with (the training
  /// set's); empty: the sorted distinct labels of these files.
  std::vector<std::string> labels;
  float scale = 0; ///< idx: pixel multiplier; 0 = 1/255
};

/// Samples as rows of x; targets as class indices [N] (classification) or
/// values [N, targets] (regression).
struct dataset {
  devices::tensor x;
  devices::tensor y;
  std::int64_t samples = 0;
  std::int64_t features = 0;
  /// Per-sample shape: IDX images [1, rows, cols] (rank-4 files as they
  /// are), CSV [features].
  devices::shape_t sample_shape;
  std::int64_t targets = 1; ///< regression outputs per sample (0: none)
  std::int64_t classes = 0; ///< 0 = regression
  /// CSV text class labels: the name of each class index (sorted); empty
  /// when the labels are numbers.
  std::vector<std::string> labels;
  std::string description; ///< e.g. "train-images-idx3-ubyte.gz (60000 x 784)"
  /// IDX data also keeps its bytes, x[i] == byte_value(bytes[i]): a batch
  /// gathered from them reads a quarter of the memory.
  std::vector<std::uint8_t> bytes;
  float byte_scale = 0; ///< 0: byte / 255
};

/// Copies row `row` of ds.x into out (ds.features values), from the bytes
/// where the dataset keeps them.
void copy_row(const dataset& ds, std::int64_t row, float* out);

/// Asks the CPU to start loading row `row` (what copy_row reads) into its
/// caches. Gathering random rows waits on memory; prefetching a few rows
/// ahead overlaps those waits.
void prefetch_row(const dataset& ds, std::int64_t row);

/// Reads an IDX image file and an IDX label file (either order, plain or
/// gzip). Throws data_error naming the file on any problem.
dataset read_idx(const std::string& images_or_labels,
                 const std::string& labels_or_images, float scale = 0);

/// Reads an IDX image file alone (samples to predict): no targets
/// (targets 0, y undefined). Throws data_error naming the file.
dataset read_idx_images(const std::string& images, float scale = 0);

/// Reads CSV files (same columns in each; header optional and
/// auto-detected): numeric features, and a target that is a number, a
/// class index, or (classes != 0) a class name: names are mapped to
/// indices in sorted order, or by `labels` when given. Throws data_error
/// with file:line:column.
dataset read_csv(const std::vector<std::string>& files,
                 const std::string& target, std::int64_t classes,
                 const std::vector<std::string>& labels = {});

/// Reads numeric CSV files whose columns are features (samples to
/// predict), but for column `skip` (a name or index, as data.target) when
/// given: no targets (targets 0, y undefined).
dataset read_csv_features(const std::vector<std::string>& files,
                          const std::string& skip = "");

/// Reads whatever spec describes.
dataset load(const source_spec& spec);

/// load() once per process per spec; actors in one process share the result.
std::shared_ptr<const dataset> load_shared(const source_spec& spec);

} // namespace troupe::data

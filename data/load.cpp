#include "data/dataset.hpp"

#include <map>
#include <mutex>

#include <fmt/format.h>

namespace troupe::data {

dataset load(const source_spec& spec) {
  if (spec.format == "idx") {
    if (spec.files.size() != 2)
      throw data_error(fmt::format(
          "data: format \"idx\" needs two files (images and labels), got {}",
          spec.files.size()));
    return read_idx(spec.files[0], spec.files[1], spec.scale);
  }
  if (spec.format == "csv")
    return read_csv(spec.files, spec.target, spec.classes, spec.labels);
  throw data_error(fmt::format("data: unknown format \"{}\"", spec.format));
}

std::shared_ptr<const dataset> load_shared(const source_spec& spec) {
  // Keyed by everything that changes the result; entries live as long as
  // someone holds them, so a finished job frees its data.
  static std::mutex mtx;
  static std::map<std::string, std::weak_ptr<const dataset>> cache;
  auto key = fmt::format("{}|{}|{}|{}|{}|{}", spec.format,
                         fmt::join(spec.files, "|"), spec.target, spec.classes,
                         spec.scale, fmt::join(spec.labels, "\x1f"));
  std::lock_guard<std::mutex> guard(mtx);
  if (auto hit = cache[key].lock())
    return hit;
  auto ds = std::make_shared<const dataset>(load(spec));
  cache[key] = ds;
  return ds;
}

} // namespace troupe::data

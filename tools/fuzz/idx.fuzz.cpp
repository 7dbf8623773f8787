// IDX image and label files (data/idx.cpp), plain or gzip: the first byte
// says where the input splits into the two files.
#include "data/dataset.hpp"
#include "data/test_files.hpp"
#include "tools/fuzz/seeds_init.hpp"

namespace tf = troupe::fuzz;
namespace td = troupe::data;

std::vector<tf::bytes> tf::fuzz_seeds() {
  const auto images =
      td::testing::idx_bytes({3, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  const auto labels = td::testing::idx_bytes({3}, {0, 1, 2});
  bytes seed{static_cast<std::uint8_t>(images.size())};
  seed.insert(seed.end(), images.begin(), images.end());
  seed.insert(seed.end(), labels.begin(), labels.end());
  return {seed};
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t n) {
  if (n == 0)
    return 0;
  const std::size_t split = std::min<std::size_t>(data[0], n - 1);
  const auto a = tf::as_file(data + 1, split, 0);
  const auto b = tf::as_file(data + 1 + split, n - 1 - split, 1);
  try {
    td::read_idx(a, b);
  } catch (const td::data_error&) {
  }
  try {
    td::read_idx_images(a);
  } catch (const td::data_error&) {
  }
  return 0;
}

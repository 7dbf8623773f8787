#include "data/dataset.hpp"
#include "data/test_files.hpp"

#include <boost/test/unit_test.hpp>

#include <cstring>
#include <filesystem>

namespace td = troupe::data;
using namespace troupe::data::testing;

namespace {

// Three 2x2 images with labels 0, 2, 1.
struct idx_fixture {
  temp_dir dir;
  std::vector<std::uint8_t> images =
      idx_bytes({3, 2, 2}, {0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8});
  std::vector<std::uint8_t> labels = idx_bytes({3}, {0, 2, 1});
};

void check_message(const std::string& a, const std::string& b,
                   const std::string& needle) {
  try {
    td::read_idx(a, b);
    BOOST_FAIL("expected data_error containing: " + needle);
  } catch (const td::data_error& e) {
    BOOST_TEST_INFO(e.what());
    BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos);
  }
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(idx, idx_fixture)

BOOST_AUTO_TEST_CASE(plain_and_gzip_read_the_same) {
  write_plain(dir.file("img"), images);
  write_plain(dir.file("lbl"), labels);
  write_gz(dir.file("img.gz"), images);
  write_gz(dir.file("lbl.gz"), labels);
  auto a = td::read_idx(dir.file("img"), dir.file("lbl"));
  auto b = td::read_idx(dir.file("lbl.gz"), dir.file("img.gz")); // either order
  BOOST_TEST(a.samples == 3);
  BOOST_TEST(a.features == 4);
  BOOST_TEST(a.classes == 3);
  BOOST_TEST(a.x.data()[1] == 1.0f);
  BOOST_TEST(a.x.data()[2] == 0.2f);
  BOOST_TEST(a.y.to_vector() == (std::vector<float>{0, 2, 1}));
  BOOST_TEST(a.x.to_vector() == b.x.to_vector());
  BOOST_TEST(a.y.to_vector() == b.y.to_vector());
}

BOOST_AUTO_TEST_CASE(rows_copied_from_the_bytes_equal_x_bit_for_bit) {
  // Every byte value, in rows of 16, with the default and a given scale.
  std::vector<std::uint8_t> all(256);
  for (int v = 0; v < 256; ++v)
    all[std::size_t(v)] = static_cast<std::uint8_t>(v);
  std::vector<std::uint8_t> lbl(16, 0);
  write_plain(dir.file("img"), idx_bytes({16, 4, 4}, all));
  write_plain(dir.file("lbl"), idx_bytes({16}, lbl));
  for (float scale : {0.0f, 0.0123f}) {
    auto ds = td::read_idx(dir.file("img"), dir.file("lbl"), scale);
    BOOST_REQUIRE(ds.bytes.size() == 256u);
    std::vector<float> row(16);
    for (std::int64_t r = 0; r < 16; ++r) {
      td::copy_row(ds, r, row.data());
      BOOST_TEST(std::memcmp(row.data(), ds.x.data() + r * 16, 64) == 0,
                 "row " << r << " scale " << scale);
    }
  }
}

BOOST_AUTO_TEST_CASE(truncated_gzip) {
  write_gz(dir.file("img.gz"), images);
  write_gz(dir.file("lbl.gz"), labels);
  auto size = std::filesystem::file_size(dir.file("img.gz"));
  std::filesystem::resize_file(dir.file("img.gz"), size - 12);
  check_message(dir.file("img.gz"), dir.file("lbl.gz"), "img.gz: truncated");
}

BOOST_AUTO_TEST_CASE(truncated_plain) {
  images.resize(images.size() - 3);
  write_plain(dir.file("img"), images);
  write_plain(dir.file("lbl"), labels);
  check_message(dir.file("img"), dir.file("lbl"), "img: truncated");
}

BOOST_AUTO_TEST_CASE(a_header_declaring_more_than_the_file_is_not_allocated) {
  // 80 bytes whose header declares 3 GiB of images (3 x 32768 x 32768).
  std::vector<std::uint8_t> head{0, 0, 8, 3};
  for (std::uint32_t d : {3u, 32768u, 32768u})
    for (int k = 3; k >= 0; --k)
      head.push_back(static_cast<std::uint8_t>(d >> (8 * k)));
  head.resize(80, 7);
  write_plain(dir.file("big"), head);
  write_plain(dir.file("lbl"), labels);
  check_message(dir.file("big"), dir.file("lbl"),
                "big: truncated: the header declares 3221225472 bytes of IDX "
                "data but the file holds 64");
  // Compressed, the size is not known before reading: it is read in
  // pieces, and ends with the data there is.
  write_gz(dir.file("big.gz"), head);
  check_message(dir.file("big.gz"), dir.file("lbl"),
                "big.gz: truncated: the IDX data needs 3221225472 bytes but "
                "the file ends after 64");
}

BOOST_AUTO_TEST_CASE(wrong_magic) {
  images[2] = 0x0d; // float data, not unsigned bytes
  write_plain(dir.file("img"), images);
  write_plain(dir.file("lbl"), labels);
  check_message(dir.file("img"), dir.file("lbl"), "img: not an IDX file");
}

BOOST_AUTO_TEST_CASE(label_count_differs) {
  write_plain(dir.file("img"), images);
  write_plain(dir.file("lbl"), idx_bytes({2}, {0, 1}));
  check_message(dir.file("img"), dir.file("lbl"), "has 2 labels but");
}

BOOST_AUTO_TEST_CASE(missing_file) {
  write_plain(dir.file("lbl"), labels);
  check_message(dir.file("nope.gz"), dir.file("lbl"),
                "nope.gz: cannot open: No such file or directory");
}

BOOST_AUTO_TEST_CASE(trailing_bytes) {
  images.push_back(9);
  write_plain(dir.file("img"), images);
  write_plain(dir.file("lbl"), labels);
  check_message(dir.file("img"), dir.file("lbl"), "followed by more bytes");
}

BOOST_AUTO_TEST_CASE(fashion_mnist_reads_as_debian_ships_it) {
  // tools/dev installs the package: a missing file is a failure, not a skip.
  const std::string base = "/usr/share/datasets/fashion-mnist/";
  BOOST_REQUIRE_MESSAGE(
      std::filesystem::exists(base + "t10k-images-idx3-ubyte.gz"),
      "dataset-fashion-mnist is not installed (tools/dev installs it)");
  auto ds = td::read_idx(base + "t10k-images-idx3-ubyte.gz",
                         base + "t10k-labels-idx1-ubyte.gz");
  BOOST_TEST(ds.samples == 10000);
  BOOST_TEST(ds.features == 784);
  BOOST_TEST(ds.classes == 10);
}

BOOST_AUTO_TEST_SUITE_END()

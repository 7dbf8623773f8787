#include "runtime/snapshot.hpp"

#include "data/test_files.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

namespace tr = troupe::runtime;
using troupe::data::testing::temp_dir;
using troupe::data::testing::write_text;
using troupe::devices::tensor;

namespace {

tr::shard_snapshot sample() {
  tr::shard_snapshot s;
  s.shard = 1;
  s.version = 300;
  s.offset = 10;
  s.total = 20;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  s.params = tensor::from(
      {6}, std::vector<float>{1.5f, -0.0f, nan, 3e-39f, -2.25f, 7.0f});
  s.optimizer_state.push_back(tensor::from({6}, std::vector<float>(6, 0.5f)));
  s.optimizer_state.push_back(tensor::from({6}, std::vector<float>(6, 0.25f)));
  s.ledger = {-1, 4, 17};
  return s;
}

bool same_bits(const tensor& a, const tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

std::string error_of(const std::string& path) {
  try {
    tr::read_snapshot_file(path);
  } catch (const tr::snapshot_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

BOOST_AUTO_TEST_CASE(snapshot_files_round_trip_bit_for_bit) {
  temp_dir dir;
  const auto path = dir.file("param_shard-1-v300.snap");
  const auto s = sample();
  tr::write_snapshot_file(path, s);
  const auto r = tr::read_snapshot_file(path);
  BOOST_TEST(r.shard == 1);
  BOOST_TEST(r.version == 300);
  BOOST_TEST(r.offset == 10);
  BOOST_TEST(r.total == 20);
  BOOST_TEST(same_bits(r.params, s.params));
  BOOST_REQUIRE_EQUAL(r.optimizer_state.size(), 2u);
  BOOST_TEST(same_bits(r.optimizer_state[0], s.optimizer_state[0]));
  BOOST_TEST(same_bits(r.optimizer_state[1], s.optimizer_state[1]));
  BOOST_TEST(r.ledger == s.ledger);
  // Atomic: no temporary file is left beside it.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    (void)e;
    ++files;
  }
  BOOST_TEST(files == 1);
}

BOOST_AUTO_TEST_CASE(corrupt_and_truncated_snapshots_are_named_and_refused) {
  temp_dir dir;
  const auto path = dir.file("s.snap");
  tr::write_snapshot_file(path, sample());
  const auto good = read_all(path);

  // One flipped bit in the payload: the checksum catches it.
  auto flipped = good;
  flipped[flipped.size() - 20] ^= 0x10;
  write_text(path, flipped);
  auto e = error_of(path);
  BOOST_TEST(e.find(path) != std::string::npos);
  BOOST_TEST(e.find("checksum mismatch") != std::string::npos);

  // Cut short, at a word boundary and not.
  write_text(path, good.substr(0, good.size() - 64));
  e = error_of(path);
  BOOST_TEST(e.find(path) != std::string::npos);
  BOOST_TEST(e.find("truncated") != std::string::npos);
  write_text(path, good.substr(0, good.size() - 3));
  BOOST_TEST(error_of(path).find("truncated") != std::string::npos);

  // Not a troupe file at all.
  write_text(path, std::string(64, 'x'));
  e = error_of(path);
  BOOST_TEST(e.find(path) != std::string::npos);
  BOOST_TEST(!e.empty());

  // Missing.
  e = error_of(dir.file("none.snap"));
  BOOST_TEST(e.find("none.snap: cannot open") != std::string::npos);
}

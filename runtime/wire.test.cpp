#include "runtime/wire.hpp"

#include "runtime/caf_types.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <limits>

using troupe::devices::tensor;

namespace {

tensor awkward_values() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const float sub = std::numeric_limits<float>::denorm_min();
  return tensor::from({2, 3},
                      std::vector<float>{nan, inf, -inf, sub, -0.0f, 1.5f});
}

bool same_bits(const tensor& a, const tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

} // namespace

BOOST_AUTO_TEST_SUITE(wire)

BOOST_AUTO_TEST_CASE(capnp_frame_round_trip_keeps_every_bit) {
  auto t = awkward_values();
  auto bytes = troupe::runtime::encode_tensor(t);
  auto back = troupe::runtime::decode_tensor(bytes.data(), bytes.size());
  BOOST_TEST(same_bits(t, back));
}

BOOST_AUTO_TEST_CASE(bad_frames_are_errors) {
  auto bytes = troupe::runtime::encode_tensor(awkward_values());
  BOOST_CHECK_THROW(
      troupe::runtime::decode_tensor(bytes.data(), bytes.size() - 8),
      troupe::runtime::wire_error);
  BOOST_CHECK_THROW(troupe::runtime::decode_tensor(bytes.data(), 5),
                    troupe::runtime::wire_error);
}

BOOST_AUTO_TEST_CASE(caf_serialization_is_one_raw_block) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto t = awkward_values();
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  BOOST_REQUIRE(!sink(t));
  // kind (1) + shape (size + 2 x int64) + block size + 24 payload bytes
  BOOST_TEST(buf.size() < 24u + 40u);
  tensor back;
  caf::binary_deserializer source{sys, buf};
  BOOST_REQUIRE(!source(back));
  BOOST_TEST(same_bits(t, back));
}

BOOST_AUTO_TEST_CASE(an_undefined_tensor_crosses_as_undefined) {
  // A param shard restarted before its first snapshot is restored from an
  // empty state message: its tensors must arrive as nothing, not fail.
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  tensor none;
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  BOOST_REQUIRE(!sink(none));
  tensor back = awkward_values();
  caf::binary_deserializer source{sys, buf};
  BOOST_REQUIRE(!source(back));
  BOOST_TEST(!back.defined());
}

BOOST_AUTO_TEST_SUITE_END()

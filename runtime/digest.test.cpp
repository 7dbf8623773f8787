#include "runtime/digest.hpp"

#include <boost/test/unit_test.hpp>

#include <string>

BOOST_AUTO_TEST_SUITE(digest)

BOOST_AUTO_TEST_CASE(sha256_known_vectors) {
  using troupe::runtime::sha256_hex;
  BOOST_TEST(
      sha256_hex("abc", 3) ==
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  BOOST_TEST(
      sha256_hex("", 0) ==
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  troupe::runtime::sha256 h;
  h.update("a", 1);
  h.update("bc", 2);
  BOOST_TEST(h.hex() == sha256_hex("abc", 3));
}

BOOST_AUTO_TEST_CASE(crc32_known_vector) {
  BOOST_TEST(troupe::runtime::crc32_of("123456789", 9) == 0xCBF43926u);
}

BOOST_AUTO_TEST_SUITE_END()

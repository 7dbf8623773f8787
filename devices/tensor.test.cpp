#include "devices/tensor.hpp"

#include "devices/check.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <stdexcept>

using troupe::devices::tensor;

BOOST_AUTO_TEST_SUITE(tensor_suite)

BOOST_AUTO_TEST_CASE(shape_and_alignment) {
  auto t = tensor::zeros({3, 5});
  BOOST_TEST(t.numel() == 15);
  BOOST_TEST(t.bytes() == 60u);
  BOOST_TEST(t.rank() == 2u);
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0u);
  for (auto v : t.to_vector())
    BOOST_TEST(v == 0.0f);
}

BOOST_AUTO_TEST_CASE(copies_share_storage_and_clone_does_not) {
  auto a = tensor::from({2, 2}, std::vector<float>{1, 2, 3, 4});
  auto b = a; // what an in-process message does
  BOOST_TEST(b.data() == a.data());
  BOOST_TEST(a.use_count() == 2);
  b.data()[0] = 9;
  BOOST_TEST(a.data()[0] == 9.0f);
  auto c = a.clone();
  BOOST_TEST(!c.shares_storage(a));
  c.data()[1] = -1;
  BOOST_TEST(a.data()[1] == 2.0f);
}

BOOST_AUTO_TEST_CASE(slices_are_views) {
  auto a = tensor::from({6}, std::vector<float>{0, 1, 2, 3, 4, 5});
  auto s = a.slice(2, 3);
  BOOST_TEST(s.numel() == 3);
  BOOST_TEST(s.data()[0] == 2.0f);
  BOOST_TEST(s.shares_storage(a));
  s.data()[2] = 40;
  BOOST_TEST(a.data()[4] == 40.0f);
  auto m = a.reshaped({2, 3});
  BOOST_TEST(m.dim(1) == 3);
}

BOOST_AUTO_TEST_CASE(bad_views_are_internal_errors) {
  troupe::set_internal_error_throws(true);
  auto a = tensor::zeros({4});
  BOOST_CHECK_THROW(a.slice(3, 2), std::logic_error);
  BOOST_CHECK_THROW(a.reshaped({3}), std::logic_error);
  troupe::set_internal_error_throws(false);
}

BOOST_AUTO_TEST_SUITE_END()

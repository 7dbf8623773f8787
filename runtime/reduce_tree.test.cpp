#include "runtime/reduce_tree.hpp"

#include <boost/test/unit_test.hpp>

#include <string>

using troupe::runtime::tree_reduce;
using troupe::runtime::tree_split;

BOOST_AUTO_TEST_SUITE(reduce_tree)

BOOST_AUTO_TEST_CASE(splits) {
  BOOST_TEST(tree_split(0, 2) == 1);
  BOOST_TEST(tree_split(0, 3) == 2);
  BOOST_TEST(tree_split(0, 4) == 2);
  BOOST_TEST(tree_split(0, 5) == 4);
  BOOST_TEST(tree_split(4, 7) == 6);
}

BOOST_AUTO_TEST_CASE(shape_of_the_tree) {
  auto show = [](std::int64_t n) {
    return tree_reduce<std::string>(
        0, n, [](std::int64_t i) { return std::to_string(i); },
        [](std::string a, std::string b) { return "(" + a + "+" + b + ")"; });
  };
  BOOST_TEST(show(1) == "0");
  BOOST_TEST(show(3) == "((0+1)+2)");
  BOOST_TEST(show(5) == "(((0+1)+(2+3))+4)");
  BOOST_TEST(show(6) == "(((0+1)+(2+3))+(4+5))");
}

BOOST_AUTO_TEST_CASE(float_sum_is_fixed_by_the_tree) {
  // Values whose sum depends on order in float arithmetic.
  const float v[] = {1e8f, 1.0f, -1e8f, 1.0f};
  const float got = tree_reduce<float>(
      0, 4, [&](std::int64_t i) { return v[i]; },
      [](float a, float b) { return a + b; });
  BOOST_TEST(got == (v[0] + v[1]) + (v[2] + v[3]));
}

BOOST_AUTO_TEST_SUITE_END()

#pragma once
/// \file The canonical reduction tree over ranks 0..n-1. Floating-point sums
/// depend on their order, so every sum of per-rank values follows this one
/// tree: whoever computes a subtree's sum, and in whatever order the leaves
/// arrive, the bits of the result are the same.
#include <cstdint>
#include <utility>

namespace troupe::runtime {

/// Where the subtree [lo, hi) splits: the left part is the largest power of
/// two strictly smaller than the range.
constexpr std::int64_t tree_split(std::int64_t lo, std::int64_t hi) {
  std::int64_t half = 1;
  while (half * 2 < hi - lo)
    half *= 2;
  return lo + half;
}

/// Reduces leaves [lo, hi) in canonical order. leaf(i) yields rank i's
/// value; combine(a, b) returns a + b (left operand from lower ranks).
template <class Value, class Leaf, class Combine>
Value tree_reduce(std::int64_t lo, std::int64_t hi, Leaf&& leaf,
                  Combine&& combine) {
  if (hi - lo == 1)
    return leaf(lo);
  const auto mid = tree_split(lo, hi);
  Value left = tree_reduce<Value>(lo, mid, leaf, combine);
  Value right = tree_reduce<Value>(mid, hi, leaf, combine);
  return combine(std::move(left), std::move(right));
}

} // namespace troupe::runtime

#pragma once
/// \file Shape rules every backend applies the same way.
#include "devices/check.hpp"
#include "devices/tensor.hpp"

#include <cstdint>

namespace troupe::devices {

/// Rows and columns of a tensor seen as a matrix (rank 1: one row).
inline std::int64_t rows_of(const tensor& t) {
  return t.rank() >= 2 ? t.dim(0) : 1;
}
inline std::int64_t cols_of(const tensor& t) {
  return t.rank() >= 2 ? t.numel() / t.dim(0) : t.numel();
}

/// Sizes of c [m, n] = op(a[:, first : first + cols]) [m, k] * op(b) [k, n].
struct gemm_dims {
  std::int64_t m = 0, n = 0, k = 0;
};

/// Checks gemm's operands (matrices, the column block inside a, matching
/// sizes) and returns its sizes.
inline gemm_dims check_gemm(bool ta, bool tb, const tensor& a,
                            std::int64_t first, std::int64_t cols,
                            const tensor& b, const tensor& c) {
  TROUPE_CHECK(a.rank() == 2 && b.rank() == 2 && c.rank() == 2,
               "gemm needs matrices");
  TROUPE_CHECK(first >= 0 && cols >= 0 && first + cols <= a.dim(1),
               "gemm column block out of range");
  gemm_dims d;
  d.m = ta ? cols : a.dim(0);
  d.k = ta ? a.dim(0) : cols;
  const auto kb = tb ? b.dim(1) : b.dim(0);
  d.n = tb ? b.dim(0) : b.dim(1);
  TROUPE_CHECK(d.k == kb && c.dim(0) == d.m && c.dim(1) == d.n,
               "gemm shapes do not match");
  return d;
}

} // namespace troupe::devices

#pragma once
/// \file CAF inspection of troupe's value types. Heavy (includes CAF): only
/// .cpp files that define actors include it.
#include "devices/tensor.hpp"

#include <caf/deserializer.hpp>
#include <caf/error.hpp>
#include <caf/sec.hpp>
#include <caf/serializer.hpp>

#include <string>
#include <type_traits>

namespace troupe::devices {

// A tensor crosses a process as shape + one raw byte block: CAF 0.17's
// element-wise float packing is slow and corrupts NaN/inf/subnormals.
// Little-endian nodes assumed; sequence sizes are 32-bit, so callers chunk
// tensors above 1 GiB.
// The kind byte of a tensor that holds nothing (tensor{}): it crosses as
// such, not as a scalar missing its element.
constexpr std::uint8_t undefined_tensor_kind = 0xff;

inline caf::error inspect(caf::serializer& f, tensor& x) {
  auto shape = x.shape();
  auto kind = x.defined() ? static_cast<std::uint8_t>(x.kind())
                          : undefined_tensor_kind;
  if (auto err = f(kind, shape))
    return err;
  size_t n = x.bytes();
  if (auto err = f.begin_sequence(n))
    return err;
  if (auto err = f.apply_raw(n, x.data()))
    return err;
  return f.end_sequence();
}

inline caf::error inspect(caf::deserializer& f, tensor& x) {
  shape_t shape;
  std::uint8_t kind = 0;
  if (auto err = f(kind, shape))
    return err;
  size_t n = 0;
  if (auto err = f.begin_sequence(n))
    return err;
  if (kind == undefined_tensor_kind) {
    if (n != 0)
      return caf::make_error(caf::sec::runtime_error,
                             "an undefined tensor with a payload");
    x = tensor{};
    return f.end_sequence();
  }
  auto t = tensor::empty(shape);
  if (n != t.bytes())
    return caf::make_error(caf::sec::runtime_error,
                           "tensor payload size differs from its shape");
  if (auto err = f.apply_raw(n, t.data()))
    return err;
  x = std::move(t);
  return f.end_sequence();
}

template <class Inspector>
std::enable_if_t<!std::is_base_of_v<caf::serializer, Inspector> &&
                     !std::is_base_of_v<caf::deserializer, Inspector>,
                 typename Inspector::result_type>
inspect(Inspector& f, tensor& x) {
  std::string desc = "tensor" + to_string(x.shape());
  return f(desc);
}

} // namespace troupe::devices

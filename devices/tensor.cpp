#include "devices/tensor.hpp"

#include "devices/check.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>

namespace troupe::devices {

const char* to_string(device_kind k) {
  return k == device_kind::cuda ? "cuda" : "cpu";
}

std::int64_t numel_of(const shape_t& s) {
  std::int64_t n = 1;
  for (auto d : s) {
    TROUPE_CHECK(d >= 0, "negative dimension in shape");
    n *= d;
  }
  return n;
}

std::string to_string(const shape_t& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

namespace {

std::shared_ptr<float[]> allocate_cpu(std::int64_t n) {
  // 64-byte alignment keeps vector loads aligned; at least one element so a
  // zero-sized tensor is still "defined".
  auto bytes = static_cast<std::size_t>(n > 0 ? n : 1) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr)
    throw std::bad_alloc{};
  return std::shared_ptr<float[]>(static_cast<float*>(p),
                                  [](float* q) { std::free(q); });
}

} // namespace

tensor tensor::empty(shape_t shape) {
  tensor t;
  t.numel_ = numel_of(shape);
  t.shape_ = std::move(shape);
  t.storage_ = allocate_cpu(t.numel_);
  return t;
}

tensor tensor::zeros(shape_t shape) {
  auto t = empty(std::move(shape));
  std::memset(t.data(), 0, t.bytes());
  return t;
}

tensor tensor::from(shape_t shape, const float* values) {
  auto t = empty(std::move(shape));
  if (t.numel_ > 0)
    std::memcpy(t.data(), values, t.bytes());
  return t;
}

tensor tensor::from(shape_t shape, const std::vector<float>& values) {
  TROUPE_CHECK(numel_of(shape) == static_cast<std::int64_t>(values.size()),
               "tensor::from: shape does not match the number of values");
  return from(std::move(shape), values.data());
}

tensor tensor::wrap(shape_t shape, std::shared_ptr<float[]> owner,
                    std::int64_t offset, device_kind kind) {
  tensor t;
  t.numel_ = numel_of(shape);
  t.shape_ = std::move(shape);
  t.storage_ = std::move(owner);
  t.offset_ = offset;
  t.kind_ = kind;
  return t;
}

tensor tensor::slice(std::int64_t first, std::int64_t n) const {
  TROUPE_CHECK(first >= 0 && n >= 0 && first + n <= numel_,
               "tensor::slice out of range");
  tensor t = *this;
  t.shape_ = {n};
  t.numel_ = n;
  t.offset_ = offset_ + first;
  return t;
}

tensor tensor::reshaped(shape_t shape) const {
  TROUPE_CHECK(numel_of(shape) == numel_,
               "tensor::reshaped: element count differs");
  tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

tensor tensor::clone() const {
  TROUPE_CHECK(kind_ == device_kind::cpu, "clone of a non-CPU tensor");
  return from(shape_, data());
}

std::vector<float> tensor::to_vector() const {
  TROUPE_CHECK(kind_ == device_kind::cpu, "to_vector of a non-CPU tensor");
  return std::vector<float>(data(), data() + numel_);
}

} // namespace troupe::devices

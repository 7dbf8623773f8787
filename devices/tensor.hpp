#pragma once
/// \file A float32 tensor: shape, contiguous storage, device tag.
#include "devices/fwd.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace troupe::devices {

/// Where a tensor's storage lives.
enum class device_kind : std::uint8_t { cpu = 0, cuda = 1 };

/// Returns "cpu" or "cuda".
const char* to_string(device_kind k);

using shape_t = std::vector<std::int64_t>;

/// Number of elements a shape holds (1 for a scalar shape {}).
std::int64_t numel_of(const shape_t& s);

/// Renders a shape as "[64, 784]".
std::string to_string(const shape_t& s);

/// A float32 tensor. Copies share storage (a reference-counted buffer), so
/// tensors can be passed between actors in one process without copying;
/// clone() makes a deep copy. Storage is always contiguous, row-major.
class tensor {
public:
  tensor() = default;

  /// Uninitialized CPU tensor of the given shape, 64-byte aligned.
  static tensor empty(shape_t shape);
  /// Zero-filled CPU tensor.
  static tensor zeros(shape_t shape);
  /// CPU tensor holding a copy of values, with the given shape.
  static tensor from(shape_t shape, const float* values);
  static tensor from(shape_t shape, const std::vector<float>& values);
  /// Wraps existing storage; the tensor keeps owner alive.
  static tensor wrap(shape_t shape, std::shared_ptr<float[]> owner,
                     std::int64_t offset, device_kind kind);

  const shape_t& shape() const noexcept { return shape_; }
  std::int64_t dim(std::size_t i) const { return shape_.at(i); }
  std::size_t rank() const noexcept { return shape_.size(); }
  std::int64_t numel() const noexcept { return numel_; }
  std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(numel_) * sizeof(float);
  }
  bool defined() const noexcept { return storage_ != nullptr; }
  device_kind kind() const noexcept { return kind_; }

  float* data() noexcept { return storage_.get() + offset_; }
  const float* data() const noexcept { return storage_.get() + offset_; }

  /// A 1-D view of n elements starting at element `first`; shares storage.
  tensor slice(std::int64_t first, std::int64_t n) const;
  /// The same storage seen with another shape of equal size.
  tensor reshaped(shape_t shape) const;
  /// Deep copy into fresh storage.
  tensor clone() const;
  /// True when both tensors view the same storage.
  bool shares_storage(const tensor& other) const noexcept {
    return storage_ == other.storage_;
  }
  /// Number of tensors sharing this storage (for tests of zero-copy paths).
  long use_count() const noexcept { return storage_.use_count(); }

  std::vector<float> to_vector() const;

private:
  shape_t shape_;
  std::int64_t numel_ = 0;
  std::int64_t offset_ = 0;
  std::shared_ptr<float[]> storage_;
  device_kind kind_ = device_kind::cpu;
};

} // namespace troupe::devices

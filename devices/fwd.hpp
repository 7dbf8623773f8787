#pragma once
/// \file Forward declarations for devices/: include this, not the heavy
/// headers.
#include <cstdint>

namespace troupe::devices {
enum class device_kind : std::uint8_t;
class tensor;
class device;
} // namespace troupe::devices

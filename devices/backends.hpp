#pragma once
/// \file Which backends this build has, which devices this machine offers,
/// and devices for actors. CUDA-free: callers need no CUDA headers.
#include "devices/device.hpp"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::devices {

/// A device this machine offers.
struct device_info {
  std::string id; ///< "cpu", "cuda:0", ...
  device_kind kind = device_kind::cpu;
  int ordinal = 0;
  std::string name;               ///< "NVIDIA H100 80GB HBM3", CPU backend
  std::int64_t memory_bytes = 0;  ///< GPU memory; 0 for the CPU
  std::string compute_capability; ///< "9.0"; empty for the CPU
};

/// A device that cannot be had: no backend compiled in, no GPU, a CUDA
/// call that failed (the message names the call, file and line).
class device_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Backends compiled into this build: "cpu", and "cuda" when built with it.
std::vector<std::string> compiled_backends();
/// Whether `name` is one of them.
bool has_backend(const std::string& name);

/// The GPUs the CUDA runtime sees. Empty without the CUDA backend, a driver
/// or a GPU; then `why_not` (when given) says which.
std::vector<device_info> cuda_devices(std::string* why_not = nullptr);

/// The CPU, then each GPU.
std::vector<device_info> detect_devices(std::string* cuda_note = nullptr);

/// A CUDA device of its own for one actor: its own cuBLAS handle and
/// stream on GPU `ordinal`. Throws device_error when there is none.
std::unique_ptr<device> make_cuda_device(int ordinal);

/// "cpu" -> {cpu}, "cuda" -> {cuda, 0}, "cuda:N" -> {cuda, N}; throws
/// std::invalid_argument naming the text otherwise.
std::pair<device_kind, int> parse_device_id(const std::string& id);

} // namespace troupe::devices

#include "devices/backends.hpp"

#ifdef TROUPE_WITH_CUDA
#include "devices/cuda/cuda_device.hpp"
#endif

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

namespace troupe::devices {

std::vector<std::string> compiled_backends() {
#ifdef TROUPE_WITH_CUDA
  return {"cpu", "cuda"};
#else
  return {"cpu"};
#endif
}

bool has_backend(const std::string& name) {
  const auto all = compiled_backends();
  return std::find(all.begin(), all.end(), name) != all.end();
}

std::vector<device_info> cuda_devices(std::string* why_not) {
#ifdef TROUPE_WITH_CUDA
  return cuda_backend::list_devices(why_not);
#else
  if (why_not != nullptr)
    *why_not = "this build has no CUDA backend";
  return {};
#endif
}

std::vector<device_info> detect_devices(std::string* cuda_note) {
  device_info c;
  c.id = "cpu";
  c.kind = device_kind::cpu;
  c.name = cpu().name();
  std::vector<device_info> out{c};
  for (auto& g : cuda_devices(cuda_note))
    out.push_back(std::move(g));
  return out;
}

std::unique_ptr<device> make_cuda_device(int ordinal) {
#ifdef TROUPE_WITH_CUDA
  return cuda_backend::make_device(ordinal);
#else
  throw device_error(fmt::format(
      "cuda:{}: this build has no CUDA backend (configure with nvcc present "
      "or -DTROUPE_CUDA=ON)",
      ordinal));
#endif
}

std::pair<device_kind, int> parse_device_id(const std::string& id) {
  if (id == "cpu")
    return {device_kind::cpu, 0};
  if (id == "cuda")
    return {device_kind::cuda, 0};
  if (id.rfind("cuda:", 0) == 0 && id.size() > 5) {
    const auto digits = id.substr(5);
    if (digits.find_first_not_of("0123456789") == std::string::npos &&
        digits.size() <= 4)
      return {device_kind::cuda, std::atoi(digits.c_str())};
  }
  throw std::invalid_argument(
      fmt::format("unknown device '{}' (cpu, cuda or cuda:N)", id));
}

} // namespace troupe::devices

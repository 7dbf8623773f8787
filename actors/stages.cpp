#include "actors/stages.hpp"

#include <fmt/format.h>

#include <dlfcn.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>

namespace troupe::stages {

namespace {

struct registry {
  std::mutex mutex;
  std::map<std::string, data_stage_factory> data_stages;
  std::map<std::string, controller_factory> controllers;
  std::map<std::string, metric_factory> metrics;
  std::vector<std::string> plugins;
};

registry& the_registry() {
  static registry r;
  return r;
}

template <class Map>
std::vector<std::string> names_of(const Map& m) {
  std::vector<std::string> v;
  for (const auto& [name, make] : m)
    v.push_back(name);
  return v;
}

} // namespace

std::uint64_t batch_context::bits(std::uint64_t i) const {
  // One stream per (epoch, step, worker, position); the counter is i.
  const auto stream = devices::mix64(
      devices::mix64(devices::mix64(static_cast<std::uint64_t>(epoch)) ^
                     static_cast<std::uint64_t>(step)) ^
      (static_cast<std::uint64_t>(worker) << 16 ^
       static_cast<std::uint64_t>(position)));
  return devices::random_bits(seed ^ 0x7374616765ULL, i, stream);
}

float batch_context::uniform(std::uint64_t i) const {
  return static_cast<float>(bits(i) >> 40) * (1.0f / 16777216.0f);
}

std::uint64_t batch_context::below(std::uint64_t i, std::uint64_t n) const {
  return devices::uniform_below(bits(i), n);
}

void register_data_stage(const std::string& type, data_stage_factory make) {
  devices::nn::check_type_name(type);
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.data_stages.emplace(type, std::move(make)).second)
    throw std::invalid_argument(
        fmt::format("data stage type \"{}\" is registered already", type));
}

void register_controller(const std::string& type, controller_factory make) {
  devices::nn::check_type_name(type);
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.controllers.emplace(type, std::move(make)).second)
    throw std::invalid_argument(
        fmt::format("controller type \"{}\" is registered already", type));
}

void register_metric(const std::string& type, metric_factory make) {
  devices::nn::check_type_name(type);
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.metrics.emplace(type, std::move(make)).second)
    throw std::invalid_argument(
        fmt::format("metric type \"{}\" is registered already", type));
}

std::vector<std::string> metric_types() {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return names_of(r.metrics);
}

bool has_metric(const std::string& type) {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.metrics.count(type) > 0;
}

std::unique_ptr<metric> make_metric(const std::string& type, const params& p,
                                    const sample_info& s) {
  metric_factory make;
  {
    auto& r = the_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.metrics.find(type);
    if (it != r.metrics.end())
      make = it->second;
  }
  if (!make)
    devices::nn::unknown_type("metric", p.where(), type, metric_types());
  auto m = make(p, s);
  if (!m)
    throw std::invalid_argument(fmt::format(
        "{}: the factory of \"{}\" made no metric", p.where(), type));
  p.check_all_read(type);
  return m;
}

std::vector<std::string> data_stage_types() {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return names_of(r.data_stages);
}

std::vector<std::string> controller_types() {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return names_of(r.controllers);
}

bool has_data_stage(const std::string& type) {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.data_stages.count(type) > 0;
}

bool has_controller(const std::string& type) {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.controllers.count(type) > 0;
}

std::unique_ptr<data_stage> make_data_stage(const std::string& type,
                                            const params& p,
                                            const sample_info& s) {
  data_stage_factory make;
  {
    auto& r = the_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.data_stages.find(type);
    if (it != r.data_stages.end())
      make = it->second;
  }
  if (!make)
    devices::nn::unknown_type("data stage", p.where(), type,
                              data_stage_types());
  auto stage = make(p, s);
  if (!stage)
    throw std::invalid_argument(fmt::format(
        "{}: the factory of \"{}\" made no stage", p.where(), type));
  p.check_all_read(type);
  return stage;
}

std::unique_ptr<controller> make_controller(const std::string& type,
                                            const params& p) {
  controller_factory make;
  {
    auto& r = the_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.controllers.find(type);
    if (it != r.controllers.end())
      make = it->second;
  }
  if (!make)
    devices::nn::unknown_type("controller", p.where(), type,
                              controller_types());
  auto c = make(p);
  if (!c)
    throw std::invalid_argument(fmt::format(
        "{}: the factory of \"{}\" made no controller", p.where(), type));
  p.check_all_read(type);
  return c;
}

void load_plugin(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto full = fs::absolute(path, ec).lexically_normal().string();
  auto& r = the_registry();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    if (std::find(r.plugins.begin(), r.plugins.end(), full) != r.plugins.end())
      return;
  }
  if (!fs::is_regular_file(full, ec))
    throw std::runtime_error(fmt::format("--plugin {}: no such file", path));
  // RTLD_NOW: a missing symbol is named here, not at the first batch.
  void* lib = dlopen(full.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    throw std::runtime_error(fmt::format("--plugin {}: cannot load it: {}",
                                         path, why ? why : "unknown error"));
  }
  dlerror();
  void* entry = dlsym(lib, "troupe_register_stages");
  if (entry == nullptr) {
    dlclose(lib);
    throw std::runtime_error(
        fmt::format("--plugin {}: not a troupe plugin (it has no extern \"C\" "
                    "troupe_register_stages function)",
                    path));
  }
  try {
    reinterpret_cast<void (*)()>(entry)();
  } catch (const std::exception& e) {
    // Types it registered stay: their code is in the library, kept loaded.
    throw std::runtime_error(fmt::format(
        "--plugin {}: troupe_register_stages failed: {}", path, e.what()));
  }
  std::lock_guard<std::mutex> lock(r.mutex);
  r.plugins.push_back(full);
}

std::vector<std::string> loaded_plugins() {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.plugins;
}

} // namespace troupe::stages

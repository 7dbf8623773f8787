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

// The types of one kind, by name.
template <class Factory>
struct kind {
  const char* what; // "data stage": for messages
  std::map<std::string, Factory> makers;
};

struct registry {
  std::mutex mutex;
  kind<data_stage_factory> data_stages{"data stage", {}};
  kind<controller_factory> controllers{"controller", {}};
  kind<metric_factory> metrics{"metric", {}};
  std::vector<std::string> plugins;
};

registry& the_registry() {
  static registry r;
  return r;
}

template <class Factory>
void add(kind<Factory> registry::*k, const std::string& type, Factory make) {
  devices::nn::check_type_name(type);
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!(r.*k).makers.emplace(type, std::move(make)).second)
    throw std::invalid_argument(
        fmt::format("{} type \"{}\" is registered already", (r.*k).what, type));
}

template <class Factory>
std::vector<std::string> names(kind<Factory> registry::*k) {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> v;
  for (const auto& [name, make] : (r.*k).makers)
    v.push_back(name);
  return v;
}

template <class Factory>
bool has(kind<Factory> registry::*k, const std::string& type) {
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return (r.*k).makers.count(type) > 0;
}

// Makes `type` with make_it(factory); throws, naming p.where(), for an
// unknown type, a factory that made nothing or a setting it did not read.
template <class Factory, class Make>
auto make(kind<Factory> registry::*k, const std::string& type, const params& p,
          Make make_it) {
  Factory factory;
  const char* what = nullptr;
  {
    auto& r = the_registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    what = (r.*k).what;
    auto it = (r.*k).makers.find(type);
    if (it != (r.*k).makers.end())
      factory = it->second;
  }
  if (!factory)
    devices::nn::unknown_type(what, p.where(), type, names(k));
  auto made = make_it(factory);
  if (!made)
    throw std::invalid_argument(fmt::format(
        "{}: the factory of \"{}\" made no {}", p.where(), type, what));
  p.check_all_read(type);
  return made;
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
  add(&registry::data_stages, type, std::move(make));
}

void register_controller(const std::string& type, controller_factory make) {
  add(&registry::controllers, type, std::move(make));
}

void register_metric(const std::string& type, metric_factory make) {
  add(&registry::metrics, type, std::move(make));
}

std::vector<std::string> data_stage_types() {
  return names(&registry::data_stages);
}

std::vector<std::string> controller_types() {
  return names(&registry::controllers);
}

std::vector<std::string> metric_types() {
  return names(&registry::metrics);
}

bool has_data_stage(const std::string& type) {
  return has(&registry::data_stages, type);
}

bool has_controller(const std::string& type) {
  return has(&registry::controllers, type);
}

bool has_metric(const std::string& type) {
  return has(&registry::metrics, type);
}

std::unique_ptr<data_stage> make_data_stage(const std::string& type,
                                            const params& p,
                                            const sample_info& s) {
  return make(&registry::data_stages, type, p,
              [&](const data_stage_factory& f) { return f(p, s); });
}

std::unique_ptr<controller> make_controller(const std::string& type,
                                            const params& p) {
  return make(&registry::controllers, type, p,
              [&](const controller_factory& f) { return f(p); });
}

std::unique_ptr<metric> make_metric(const std::string& type, const params& p,
                                    const sample_info& s) {
  return make(&registry::metrics, type, p,
              [&](const metric_factory& f) { return f(p, s); });
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

#include "actors/stages.hpp"

#include "runtime/config.hpp"

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
  std::vector<std::string> plugins;
};

registry& the_registry() {
  static registry r;
  return r;
}

void check_name(const std::string& type) {
  const bool ok =
      !type.empty() && type.size() <= 64 &&
      type.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
          std::string::npos;
  if (!ok)
    throw std::invalid_argument(
        fmt::format("stage type \"{}\": a name is 1 to 64 letters, digits, "
                    "'_' or '-'",
                    type));
}

template <class Map>
std::vector<std::string> names_of(const Map& m) {
  std::vector<std::string> v;
  for (const auto& [name, make] : m)
    v.push_back(name);
  return v;
}

// "unknown data stage type", the closest registered name, and where the
// others come from.
[[noreturn]] void unknown(const std::string& what, const std::string& where,
                          const std::string& type,
                          const std::vector<std::string>& known) {
  std::string hint;
  std::size_t best = std::max<std::size_t>(1, type.size() / 3) + 1;
  for (const auto& k : known)
    if (const auto d = runtime::edit_distance(type, k); d < best) {
      best = d;
      hint = fmt::format(" (did you mean \"{}\"?)", k);
    }
  throw std::invalid_argument(fmt::format(
      "{}.type: no {} \"{}\" is registered in this process{}; registered: "
      "{}. Types come from the program itself or a plugin loaded with "
      "--plugin LIB.so (on `troupe run` and on every `troupe node`)",
      where, what, type, hint,
      known.empty() ? std::string("none")
                    : fmt::format("{}", fmt::join(known, ", "))));
}

void check_all_read(const params& p, const std::string& type) {
  const auto left = p.unread();
  if (left.empty())
    return;
  std::vector<std::string> known;
  throw std::invalid_argument(fmt::format(
      "{}.{}: unknown setting for \"{}\" (it reads: {})", p.where(),
      left.front(), type,
      p.values().size() == left.size()
          ? std::string("none of the given ones")
          : [&] {
              std::vector<std::string> used;
              for (const auto& [k, v] : p.values())
                if (std::find(left.begin(), left.end(), k) == left.end())
                  used.push_back(k);
              return fmt::format("{}", fmt::join(used, ", "));
            }()));
}

} // namespace

params::params(std::string where, std::map<std::string, std::string> values)
  : where_(std::move(where))
  , values_(std::move(values)) {}

const std::string* params::find(const std::string& key) const {
  read_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

void params::fail(const std::string& key, const std::string& why) const {
  throw std::invalid_argument(fmt::format("{}.{}: {}", where_, key, why));
}

double params::number(const std::string& key, double fallback, double min,
                      double max) const {
  const auto* v = find(key);
  if (v == nullptr)
    return fallback;
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v->c_str(), &end);
  if (v->empty() || end != v->c_str() + v->size() || errno == ERANGE ||
      !std::isfinite(x))
    fail(key, fmt::format("expected a number, got \"{}\"", *v));
  if (x < min || x > max)
    fail(key, fmt::format("{} is out of range [{}, {}]", *v, min, max));
  return x;
}

std::int64_t params::integer(const std::string& key, std::int64_t fallback,
                             std::int64_t min, std::int64_t max) const {
  const auto* v = find(key);
  if (v == nullptr)
    return fallback;
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || end != v->c_str() + v->size() || errno == ERANGE)
    fail(key, fmt::format("expected an integer, got \"{}\"", *v));
  if (x < min || x > max)
    fail(key, fmt::format("{} is out of range [{}, {}]", x, min, max));
  return x;
}

bool params::flag(const std::string& key, bool fallback) const {
  const auto* v = find(key);
  if (v == nullptr)
    return fallback;
  if (*v == "true")
    return true;
  if (*v == "false")
    return false;
  fail(key, fmt::format("expected true or false, got \"{}\"", *v));
}

std::string params::text(const std::string& key,
                         const std::string& fallback) const {
  const auto* v = find(key);
  return v == nullptr ? fallback : *v;
}

std::vector<std::string> params::unread() const {
  std::vector<std::string> v;
  for (const auto& [k, x] : values_)
    if (read_.count(k) == 0)
      v.push_back(k);
  return v;
}

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
  check_name(type);
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.data_stages.emplace(type, std::move(make)).second)
    throw std::invalid_argument(
        fmt::format("data stage type \"{}\" is registered already", type));
}

void register_controller(const std::string& type, controller_factory make) {
  check_name(type);
  auto& r = the_registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.controllers.emplace(type, std::move(make)).second)
    throw std::invalid_argument(
        fmt::format("controller type \"{}\" is registered already", type));
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
    unknown("data stage", p.where(), type, data_stage_types());
  auto stage = make(p, s);
  if (!stage)
    throw std::invalid_argument(fmt::format(
        "{}: the factory of \"{}\" made no stage", p.where(), type));
  check_all_read(p, type);
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
    unknown("controller", p.where(), type, controller_types());
  auto c = make(p);
  if (!c)
    throw std::invalid_argument(fmt::format(
        "{}: the factory of \"{}\" made no controller", p.where(), type));
  check_all_read(p, type);
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

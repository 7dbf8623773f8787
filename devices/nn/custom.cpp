#include "devices/nn/custom.hpp"
#include "devices/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace troupe::devices::nn {

namespace {

struct layer_registry {
  std::mutex mutex;
  std::map<std::string, layer_factory> makers;
};

layer_registry& layers() {
  static layer_registry r;
  return r;
}

} // namespace

settings::settings(std::string where, std::map<std::string, std::string> values)
  : where_(std::move(where))
  , values_(std::move(values)) {}

const std::string* settings::find(const std::string& key) const {
  read_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

void settings::fail(const std::string& key, const std::string& why) const {
  throw std::invalid_argument(fmt::format("{}.{}: {}", where_, key, why));
}

double settings::number(const std::string& key, double fallback, double min,
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

std::int64_t settings::integer(const std::string& key, std::int64_t fallback,
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

bool settings::flag(const std::string& key, bool fallback) const {
  const auto* v = find(key);
  if (v == nullptr)
    return fallback;
  if (*v == "true")
    return true;
  if (*v == "false")
    return false;
  fail(key, fmt::format("expected true or false, got \"{}\"", *v));
}

std::string settings::text(const std::string& key,
                           const std::string& fallback) const {
  const auto* v = find(key);
  return v == nullptr ? fallback : *v;
}

std::vector<std::string> settings::unread() const {
  std::vector<std::string> v;
  for (const auto& [k, x] : values_)
    if (read_.count(k) == 0)
      v.push_back(k);
  return v;
}

void settings::check_all_read(const std::string& type) const {
  const auto left = unread();
  if (left.empty())
    return;
  std::vector<std::string> used;
  for (const auto& [k, v] : values_)
    if (std::find(left.begin(), left.end(), k) == left.end())
      used.push_back(k);
  throw std::invalid_argument(
      fmt::format("{}.{}: unknown setting for \"{}\" (it reads: {})", where_,
                  left.front(), type,
                  used.empty() ? std::string("none of the given ones")
                               : fmt::format("{}", fmt::join(used, ", "))));
}

void check_type_name(const std::string& type) {
  const bool ok =
      !type.empty() && type.size() <= 64 &&
      type.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
          std::string::npos;
  if (!ok)
    throw std::invalid_argument(
        fmt::format("type \"{}\": a name is 1 to 64 letters, digits, '_' or "
                    "'-'",
                    type));
}

void unknown_type(const std::string& what, const std::string& where,
                  const std::string& type,
                  const std::vector<std::string>& known) {
  std::string hint;
  std::size_t best = std::max<std::size_t>(1, type.size() / 3) + 1;
  for (const auto& k : known)
    if (const auto d = devices::edit_distance(type, k); d < best) {
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

void register_layer(const std::string& type, layer_factory make) {
  check_type_name(type);
  if (parse_layer_kind(type))
    throw std::invalid_argument(
        fmt::format("layer type \"{}\" is a built-in layer", type));
  auto& r = layers();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.makers.emplace(type, std::move(make)).second)
    throw std::invalid_argument(
        fmt::format("layer type \"{}\" is registered already", type));
}

bool has_layer(const std::string& type) {
  auto& r = layers();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.makers.count(type) > 0;
}

std::vector<std::string> layer_types() {
  auto& r = layers();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> v;
  for (const auto& [name, make] : r.makers)
    v.push_back(name);
  return v;
}

std::shared_ptr<const custom_layer> make_layer(const layer_spec& spec,
                                               const std::string& where) {
  layer_factory make;
  {
    auto& r = layers();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.makers.find(spec.custom);
    if (it != r.makers.end())
      make = it->second;
  }
  if (!make)
    unknown_type("layer", where, spec.custom, layer_types());
  const settings s(where, spec.settings);
  std::shared_ptr<const custom_layer> layer = make(s);
  if (!layer)
    throw std::invalid_argument(fmt::format(
        "{}: the factory of \"{}\" made no layer", where, spec.custom));
  s.check_all_read(spec.custom);
  return layer;
}

} // namespace troupe::devices::nn

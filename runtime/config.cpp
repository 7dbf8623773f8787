#include "runtime/config.hpp"

#include "devices/text.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <sstream>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

// Splits "a.b[2].c" into path components: "a", "b", "[2]", "c".
std::vector<std::string> split_key(std::string_view key) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : key) {
    if (c == '.') {
      if (!cur.empty())
        out.push_back(cur);
      cur.clear();
    } else if (c == '[') {
      if (!cur.empty())
        out.push_back(cur);
      cur = "[";
    } else if (c == ']') {
      cur += ']';
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty())
    out.push_back(cur);
  return out;
}

} // namespace

config::config()
  : root_(std::make_unique<toml::table>())
  , resolved_(std::make_unique<toml::table>()) {}

// Puts `value` at `key` in resolved_, making the tables and arrays (of
// tables) on the way.
template <class Value>
void config::record(std::string_view key, Value value) {
  const auto parts = split_key(key);
  if (parts.empty())
    return;
  toml::node* at = resolved_.get();
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    const auto& part = parts[i];
    const bool next_is_index = parts[i + 1].front() == '[';
    toml::node* next = nullptr;
    if (part.front() == '[') {
      auto* arr = at->as_array();
      if (arr == nullptr)
        return;
      const auto idx = std::stoul(part.substr(1, part.size() - 2));
      while (arr->size() <= idx)
        arr->push_back(toml::table{});
      next = arr->get(idx);
    } else {
      auto* tbl = at->as_table();
      if (tbl == nullptr)
        return;
      next = tbl->get(part);
      if (next == nullptr) {
        if (next_is_index)
          tbl->insert(part, toml::array{});
        else
          tbl->insert(part, toml::table{});
        next = tbl->get(part);
      }
    }
    at = next;
  }
  const auto& leaf = parts.back();
  if (leaf.front() == '[')
    return; // array elements are recorded through their members
  if (auto* tbl = at->as_table())
    tbl->insert_or_assign(leaf, std::move(value));
}
config::config(config&&) noexcept = default;
config& config::operator=(config&&) noexcept = default;
config::~config() = default;

config config::load_file(const std::string& path,
                         const std::vector<std::string>& overrides) {
  config c;
  c.source_ = path;
  c.base_dir_ = std::filesystem::path(path).parent_path().string();
  if (std::FILE* f = std::fopen(path.c_str(), "rb"))
    std::fclose(f);
  else
    throw config_error(
        fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  try {
    *c.root_ = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    if (b.line == 0)
      throw config_error(fmt::format("{}: {}", path, e.description()));
    throw config_error(
        fmt::format("{}:{}:{}: {}", path, b.line, b.column, e.description()));
  }
  for (const auto& o : overrides)
    c.apply_override(o);
  return c;
}

config config::parse(std::string_view text, const std::string& source_name,
                     const std::vector<std::string>& overrides) {
  config c;
  c.source_ = source_name;
  try {
    *c.root_ = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw config_error(fmt::format("{}:{}:{}: {}", source_name, b.line,
                                   b.column, e.description()));
  }
  for (const auto& o : overrides)
    c.apply_override(o);
  return c;
}

void config::apply_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw config_error(fmt::format(
        "--set {}: expected KEY=VALUE, e.g. --set optimizer.lr=0.01",
        assignment));
  std::string key = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  while (!key.empty() && key.back() == ' ')
    key.pop_back();
  if (key.find('[') != std::string::npos)
    throw config_error(fmt::format(
        "--set {}: cannot set one element of an array; set the whole array, "
        "e.g. --set 'model.layers=[{{type=\"dense\",units=10}}]'",
        assignment));
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value, "--set " + assignment);
  } catch (const toml::parse_error&) {
    // A bare word such as async is meant as a string.
    parsed = toml::table{};
    parsed.insert("v", value);
  }
  auto parts = split_key(key);
  toml::table* t = root_.get();
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    auto* next = t->get(parts[i]);
    if (next == nullptr) {
      t->insert(parts[i], toml::table{});
      next = t->get(parts[i]);
    }
    if (!next->is_table())
      throw config_error(fmt::format("--set {}: {} is {}, not a table",
                                     assignment, parts[i], type_name(*next)));
    t = next->as_table();
  }
  t->insert_or_assign(parts.back(), std::move(*parsed.get("v")));
  overridden_.emplace_back(key, assignment);
}

const toml::node* config::find(std::string_view key) const {
  const toml::node* n = root_.get();
  for (const auto& part : split_key(key)) {
    if (n == nullptr)
      return nullptr;
    if (part.front() == '[') {
      auto* arr = n->as_array();
      if (arr == nullptr)
        return nullptr;
      auto idx = std::stoul(part.substr(1, part.size() - 2));
      n = arr->get(idx);
    } else {
      auto* tbl = n->as_table();
      if (tbl == nullptr)
        return nullptr;
      n = tbl->get(part);
    }
  }
  return n;
}

std::vector<std::string> config::get_paths(std::string_view key) {
  auto paths = get_strings(key);
  if (base_dir_.empty() || where(key).rfind("--set ", 0) == 0)
    return paths;
  for (auto& p : paths)
    if (!p.empty() && std::filesystem::path(p).is_relative())
      p = (std::filesystem::path(base_dir_) / p).lexically_normal().string();
  if (find(key) != nullptr) {
    toml::array recorded;
    for (const auto& v : paths)
      recorded.push_back(v);
    record(key, std::move(recorded));
  }
  return paths;
}

bool config::has(std::string_view key) const {
  return find(key) != nullptr;
}

std::string config::where(std::string_view key) const {
  for (const auto& [k, text] : overridden_)
    if (key == k || (key.size() > k.size() && key.substr(0, k.size()) == k &&
                     (key[k.size()] == '.' || key[k.size()] == '[')))
      return "--set " + text;
  if (auto* n = find(key)) {
    const auto& b = n->source().begin;
    if (b.line > 0)
      return fmt::format("{}:{}:{}", source_, b.line, b.column);
  }
  return source_;
}

void config::fail(std::string_view key, std::string_view message) const {
  throw config_error(fmt::format("{}: {}: {}", where(key), key, message));
}

void config::touch(std::string_view key) {
  known_.emplace(key);
}

std::vector<std::string> config::keys(std::string_view key) {
  std::vector<std::string> out;
  auto* n = find(key);
  if (n == nullptr)
    return out;
  auto* t = n->as_table();
  if (t == nullptr)
    fail(key, fmt::format("expected a table, got {}", type_name(*n)));
  for (const auto& [k, v] : *t)
    out.emplace_back(k.str());
  return out;
}

std::string config::get_string(std::string_view key, std::string fallback,
                               const std::vector<std::string>& allowed) {
  known_.emplace(key);
  auto* n = find(key);
  if (n == nullptr) {
    record(key, fallback);
    return fallback;
  }
  auto* s = n->as_string();
  if (s == nullptr)
    fail(key, fmt::format("expected a string, got {}", type_name(*n)));
  std::string v = s->get();
  if (!allowed.empty() &&
      std::find(allowed.begin(), allowed.end(), v) == allowed.end())
    fail(key,
         fmt::format("\"{}\" is not one of: {}", v, fmt::join(allowed, ", ")));
  record(key, v);
  return v;
}

std::int64_t config::get_int(std::string_view key, std::int64_t fallback,
                             std::int64_t min, std::int64_t max) {
  known_.emplace(key);
  auto* n = find(key);
  if (n == nullptr) {
    record(key, fallback);
    return fallback;
  }
  auto* i = n->as_integer();
  if (i == nullptr)
    fail(key, fmt::format("expected an integer, got {}", type_name(*n)));
  const std::int64_t v = i->get();
  if (v < min || v > max)
    fail(key, fmt::format("{} is out of range [{}, {}]", v, min, max));
  record(key, v);
  return v;
}

std::string config::get_scalar_text(std::string_view key) {
  known_.emplace(key);
  auto* n = find(key);
  if (n == nullptr)
    fail(key, "missing");
  // Recorded as written (a number stays a number in resolved_json).
  if (auto* t = n->as_string()) {
    record(key, t->get());
    return t->get();
  }
  if (auto* i = n->as_integer()) {
    record(key, i->get());
    return std::to_string(i->get());
  }
  if (auto* f = n->as_floating_point()) {
    record(key, f->get());
    return fmt::format("{}", f->get());
  }
  if (auto* b = n->as_boolean()) {
    record(key, b->get());
    return b->get() ? "true" : "false";
  }
  fail(key, fmt::format("expected a string, number or boolean, got {}",
                        type_name(*n)));
}

double config::get_float(std::string_view key, double fallback, double min,
                         double max, bool min_exclusive) {
  known_.emplace(key);
  auto* n = find(key);
  if (n == nullptr) {
    record(key, fallback);
    return fallback;
  }
  double v = 0;
  if (auto* f = n->as_floating_point())
    v = f->get();
  else if (auto* i = n->as_integer())
    v = static_cast<double>(i->get());
  else
    fail(key, fmt::format("expected a number, got {}", type_name(*n)));
  if (!std::isfinite(v) || v > max || v < min || (min_exclusive && v == min))
    fail(key, fmt::format("{} is out of range {}{}, {}]", v,
                          min_exclusive ? "(" : "[", min, max));
  record(key, v);
  return v;
}

bool config::get_bool(std::string_view key, bool fallback) {
  known_.emplace(key);
  auto* n = find(key);
  if (n == nullptr) {
    record(key, fallback);
    return fallback;
  }
  auto* b = n->as_boolean();
  if (b == nullptr)
    fail(key, fmt::format("expected true or false, got {}", type_name(*n)));
  record(key, b->get());
  return b->get();
}

std::vector<std::string> config::get_strings(std::string_view key) {
  known_.emplace(key);
  auto* n = find(key);
  std::vector<std::string> out;
  if (n == nullptr)
    return out;
  if (auto* s = n->as_string()) {
    out.push_back(s->get());
    record(key, s->get());
    return out;
  }
  auto* arr = n->as_array();
  if (arr == nullptr)
    fail(key, fmt::format("expected a string or an array of strings, got {}",
                          type_name(*n)));
  for (std::size_t i = 0; i < arr->size(); ++i) {
    auto* s = arr->get(i)->as_string();
    if (s == nullptr)
      fail(key, fmt::format("element {} is {}, expected a string", i,
                            type_name(*arr->get(i))));
    out.push_back(s->get());
  }
  toml::array recorded;
  for (const auto& v : out)
    recorded.push_back(v);
  record(key, std::move(recorded));
  return out;
}

std::string config::get_name_or_index(std::string_view key) {
  known_.emplace(key);
  auto* n = find(key);
  if (n == nullptr)
    return {};
  if (auto* s = n->as_string()) {
    record(key, s->get());
    return s->get();
  }
  if (auto* i = n->as_integer()) {
    if (i->get() < 0)
      fail(key, fmt::format("column index {} is negative", i->get()));
    record(key, i->get());
    return std::to_string(i->get());
  }
  fail(key,
       fmt::format("expected a column name or index, got {}", type_name(*n)));
}

std::size_t config::array_size(std::string_view key) {
  known_.emplace(key);
  auto* n = find(key);
  if (n == nullptr)
    return 0;
  auto* arr = n->as_array();
  if (arr == nullptr)
    fail(key, fmt::format("expected an array, got {}", type_name(*n)));
  return arr->size();
}

namespace {

// What other tools call a key troupe names otherwise.
std::string_view alias_of(std::string_view leaf) {
  static const std::pair<std::string_view, std::string_view> aliases[] = {
      {"learning_rate", "lr"},    {"batch_size", "batch"},
      {"num_epochs", "epochs"},   {"n_epochs", "epochs"},
      {"num_workers", "workers"}, {"optim", "type"},
  };
  for (const auto& [from, to] : aliases)
    if (leaf == from)
      return to;
  return {};
}

} // namespace

std::string config::unknown_key(const std::string& path) const {
  // The keys read beside it: the members of its table.
  const auto dot = path.rfind('.');
  const auto parent =
      dot == std::string::npos ? std::string() : path.substr(0, dot);
  const auto leaf = dot == std::string::npos ? path : path.substr(dot + 1);
  const auto prefix = parent.empty() ? std::string() : parent + ".";
  std::vector<std::string> siblings;
  for (const auto& k : known_) {
    if (k.size() <= prefix.size() || k.compare(0, prefix.size(), prefix) != 0)
      continue;
    auto rest = k.substr(prefix.size());
    rest = rest.substr(0, rest.find_first_of(".["));
    if (std::find(siblings.begin(), siblings.end(), rest) == siblings.end())
      siblings.push_back(rest);
  }
  if (siblings.empty())
    return "unknown key";
  std::sort(siblings.begin(), siblings.end());
  std::string best;
  if (auto a = alias_of(leaf);
      !a.empty() &&
      std::find(siblings.begin(), siblings.end(), a) != siblings.end())
    best = std::string(a);
  auto best_d = std::max<std::size_t>(1, leaf.size() / 3) + 1;
  if (best.empty())
    for (const auto& s : siblings)
      if (const auto d = devices::edit_distance(leaf, s); d < best_d) {
        best_d = d;
        best = s;
      }
  auto out = std::string("unknown key");
  if (!best.empty())
    out += fmt::format(" (did you mean {}?)", best);
  out += fmt::format("; {} takes: {}",
                     parent.empty() ? "the file" : "[" + parent + "]",
                     fmt::join(siblings, ", "));
  return out;
}

void config::check_unknown() const {
  // Walk every table member; a key is fine if it or an ancestor was read as
  // a whole value, or if it is a table/array some of whose members were.
  std::function<void(const toml::node&, const std::string&)> walk;
  walk = [&](const toml::node& n, const std::string& path) {
    if (!path.empty() && known_.count(path) != 0 && !n.is_table() &&
        !(n.is_array() && n.as_array()->is_array_of_tables()))
      return;
    if (auto* t = n.as_table()) {
      if (!path.empty() && path.back() != ']' && known_.count(path) == 0) {
        bool any = false;
        for (const auto& k : known_)
          any = any || (k.size() > path.size() &&
                        k.compare(0, path.size(), path) == 0 &&
                        (k[path.size()] == '.' || k[path.size()] == '['));
        if (!any)
          fail(path, unknown_key(path));
      }
      for (const auto& [k, v] : *t)
        walk(v, path.empty() ? std::string(k.str())
                             : path + "." + std::string(k.str()));
      return;
    }
    if (auto* a = n.as_array();
        a != nullptr && a->is_array_of_tables() && known_.count(path) != 0) {
      for (std::size_t i = 0; i < a->size(); ++i)
        walk(*a->get(i), fmt::format("{}[{}]", path, i));
      return;
    }
    if (known_.count(path) == 0)
      fail(path, unknown_key(path));
  };
  walk(*root_, "");
}

std::string config::resolved_json() const {
  std::ostringstream out;
  out << toml::json_formatter{*resolved_};
  return out.str();
}

std::string config::to_toml() const {
  std::ostringstream out;
  out << toml::toml_formatter{*root_};
  return out.str();
}

} // namespace troupe::runtime

#include "actors/roles.hpp"

#include "actors/messages.hpp"

#include <caf/all.hpp>

#include <charconv>
#include <stdexcept>

#include <fmt/format.h>

namespace troupe::actors {

const char* name_of(role r) {
  switch (r) {
    case role::data_shard:
      return "data_shard";
    case role::stage:
      return "stage";
    case role::param_shard:
      return "param_shard";
    case role::aggregator:
      return "aggregator";
    case role::worker:
      return "worker";
    case role::evaluator:
      return "evaluator";
  }
  return "?";
}

std::optional<role> role_named(std::string_view name) {
  for (auto r : all_roles)
    if (name == name_of(r))
      return r;
  return std::nullopt;
}

std::string to_string(const actor_id& a) {
  if (a.kind == role::evaluator)
    return name_of(a.kind);
  return fmt::format("{}:{}", name_of(a.kind), a.index);
}

actor_id parse_actor_id(std::string_view text) {
  const auto colon = text.find(':');
  const auto name = text.substr(0, colon);
  const auto r = role_named(name);
  if (!r)
    throw std::invalid_argument(
        fmt::format("'{}': '{}' is not a role (data_shard, stage, param_shard, "
                    "aggregator, worker, evaluator)",
                    text, name));
  actor_id a{*r, 0};
  if (colon == std::string_view::npos) {
    if (*r != role::evaluator)
      throw std::invalid_argument(
          fmt::format("'{}': give an index, as in {}:0", text, name));
    return a;
  }
  const auto digits = text.substr(colon + 1);
  const auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), a.index);
  if (digits.empty() || ec != std::errc{} ||
      end != digits.data() + digits.size() || a.index < 0)
    throw std::invalid_argument(
        fmt::format("'{}': '{}' is not an index (0, 1, 2, ...)", text, digits));
  if (*r == role::evaluator && a.index != 0)
    throw std::invalid_argument(
        fmt::format("'{}': a job has one evaluator, evaluator:0", text));
  return a;
}

caf::message spawn_args(const actor_id& a, const job_spec& spec,
                        const std::vector<std::int32_t>& aggregator_of_worker) {
  switch (a.kind) {
    case role::evaluator:
      return caf::make_message(spec);
    case role::aggregator: {
      std::int32_t lo = -1, hi = -1;
      for (std::size_t r = 0; r < aggregator_of_worker.size(); ++r)
        if (aggregator_of_worker[r] == a.index) {
          if (lo < 0)
            lo = static_cast<std::int32_t>(r);
          hi = static_cast<std::int32_t>(r) + 1;
        }
      return caf::make_message(spec, a.index, lo, hi);
    }
    default:
      return caf::make_message(spec, a.index);
  }
}

} // namespace troupe::actors

#pragma once
/// \file The roles of a job's actors, in one place: their names (what CAF
/// spawns them by, what users write: "worker:3", "evaluator"), and the
/// arguments each is spawned with, the first time and at every restart.
/// Light: caf/fwd.hpp only.
#include <caf/fwd.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::actors {

struct job_spec;

/// What an actor of a job is. The coordinator is not among them: it runs
/// in the driver and is never spawned for a peer or restarted.
enum class role : std::uint8_t {
  data_shard,
  stage, ///< a user's data stage ([[stage]]): stage:(position * shards + shard)
  param_shard,
  aggregator,
  worker,
  evaluator,
};

/// Every role, in the order a job spawns them.
constexpr std::array<role, 6> all_roles{role::data_shard,  role::stage,
                                        role::param_shard, role::aggregator,
                                        role::evaluator,   role::worker};

/// "data_shard", "stage", "param_shard", "aggregator", "worker",
/// "evaluator": the
/// name CAF spawns the role by, and users write.
const char* name_of(role r);

/// The role called `name`, or none.
std::optional<role> role_named(std::string_view name);

/// One actor of a job: its role and index (the evaluator's is 0).
struct actor_id {
  role kind = role::worker;
  std::int32_t index = 0;
  friend bool operator==(const actor_id& a, const actor_id& b) {
    return a.kind == b.kind && a.index == b.index;
  }
  friend bool operator!=(const actor_id& a, const actor_id& b) {
    return !(a == b);
  }
  friend bool operator<(const actor_id& a, const actor_id& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.index < b.index;
  }
};

/// "worker:3"; the evaluator, the only one of its role, is "evaluator".
std::string to_string(const actor_id& a);

/// Parses what to_string writes (and "evaluator:0"). Throws
/// std::invalid_argument naming the text and what is wrong.
actor_id parse_actor_id(std::string_view text);

/// The arguments `a` is spawned with: (spec, index) for data shards,
/// stages, param shards and workers; (spec, index, lo, hi) for an aggregator
/// serving worker ranks [lo, hi) (from aggregator_of_worker, the
/// aggregator of each rank); (spec) for the evaluator.
caf::message spawn_args(const actor_id& a, const job_spec& spec,
                        const std::vector<std::int32_t>& aggregator_of_worker);

/// Registers the roles' spawn functions (by name_of) and the protocol's
/// message types with an actor system config.
void register_roles(caf::actor_system_config& cfg);

/// What a node checks before spawning the role named `role` for a peer: it
/// is a role of a job, the arguments are that role's, the job spec's sizes
/// and model hold, the index is the job's, the role fits `memory_bytes`
/// (0: not checked), and with a `data_root` every data file of the role
/// lies under it. "" when all is well, else the cause (naming paths, never
/// data).
std::string check_spawn_request(const std::string& role,
                                const caf::message& args,
                                const std::string& data_root,
                                std::int64_t memory_bytes);

/// Set by `troupe node`: this process serves peers, so load errors that go
/// back to them withhold the data's contents (redact_quoted).
void set_serving_peers(bool on);
bool serving_peers();

/// `text` with every double-quoted span replaced by "<withheld>": the data
/// readers quote what they quote from a file (cells, labels).
std::string redact_quoted(const std::string& text);

} // namespace troupe::actors

#pragma once
/// \file Messages of the node manager (heavy: CAF).
///   (node_info_atom)                          -> node_info
///   (spawn_atom, string job, actor owner, string role, message args)
///       -> actor (spawned there, filed under the job). The node monitors
///       the job's owner (an actor of the driver that lives as long as the
///       job) and stops the job's actors when it is gone.
///   (reset_atom, string job)                  -> stops that job's actors
///       and no other's
///   (peers_atom, keys, addresses)             -> bool: the data-plane
///       addresses of the job's processes, by CAF node id (bulk_caf.hpp)
///   (mesh_atom, addresses, int64 timeout_ms)  -> vector<string> failures:
///       opens a direct CAF connection to each node given (host:port)
///   (forget_atom, string key)                  -> the data plane forgets a
///       lost peer process (bulk_plane::forget_peer)
///   (fault_atom, string "kill" | "freeze")      -> fault injection: the
///       node's process gets SIGKILL or SIGSTOP ([[chaos]], troupe kill)
#include "runtime/node.hpp"

#include <caf/all.hpp>

namespace troupe::runtime {

using node_info_atom = caf::atom_constant<caf::atom("nodeinfo")>;
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;
using reset_atom = caf::atom_constant<caf::atom("reset")>;
using peers_atom = caf::atom_constant<caf::atom("peers")>;
using mesh_atom = caf::atom_constant<caf::atom("mesh")>;
using fault_atom = caf::atom_constant<caf::atom("fault")>;
using forget_atom = caf::atom_constant<caf::atom("forget")>;
using trim_atom = caf::atom_constant<caf::atom("trim")>;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.name, x.host, x.port, x.cores,
           x.memory_bytes, x.devices, x.pid, x.bulk, x.heartbeat_s,
           x.heartbeat_timeout_s);
}

/// Registers node_info and the manager's name ("node_manager").
void register_node_types(caf::actor_system_config& cfg);

/// Checks a spawn request before it is carried out (node_options).
using spawn_check =
    std::function<std::string(const std::string&, const caf::message&)>;

/// Spawns a node manager advertising `info` that spawns only `roles` for
/// peers (spawn_atom with any other role is refused, naming it) and only
/// what `check` (if set) passes.
caf::actor spawn_node_manager(caf::actor_system& sys, node_info info,
                              std::vector<std::string> roles,
                              spawn_check check = {});

} // namespace troupe::runtime

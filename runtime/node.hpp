#pragma once
/// \file Nodes: one `troupe node` process per machine. A node publishes a
/// node manager that spawns any actor type registered by name and reports
/// what the machine has. CAF-free; see node_protocol.hpp for the messages.
#include "runtime/auth.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace caf {
class actor_system_config;
class message;
} // namespace caf

namespace troupe::runtime {

/// What a node advertises.
struct node_info {
  std::string name;
  std::string host;
  std::uint16_t port = 0;
  std::int64_t cores = 0;
  std::int64_t memory_bytes = 0;
  std::vector<std::string> devices; ///< "cpu", "cuda:0", ...
  std::int64_t pid = 0;
  std::string bulk; ///< data-plane address (runtime/bulk.hpp), "" if none
  /// The node's network_options: a driver whose pipeline asks otherwise
  /// says so (0: not told).
  double heartbeat_s = 0;
  double heartbeat_timeout_s = 0;
};

/// Settings every process of a cluster must share.
struct network_options {
  double heartbeat_s = 0.5;       ///< middleman heartbeat interval
  double heartbeat_timeout_s = 5; ///< a silent peer is lost after this
  std::int64_t threads = 0;       ///< scheduler threads; 0 = one per core
  /// Local nodes (runtime::local_nodes) load these plugins (--plugin).
  std::vector<std::string> plugins;
};

/// Applies network_options and loads the middleman into a config: heartbeats
/// on, automatic connections off (nodes connect to each other explicitly,
/// mesh_atom), idle scheduler threads sleeping instead of polling.
void configure_network(caf::actor_system_config& cfg,
                       const network_options& opts);

/// Options of `troupe node`.
struct node_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0; ///< 0: the OS picks
  /// The host peers dial (printed, and given to drivers for the data
  /// plane); empty: `host`, or for a wildcard host (0.0.0.0, ::) this
  /// machine's first non-loopback IPv4 address, else its host name.
  std::string advertise;
  std::string name;                 ///< default: host:port
  std::vector<std::string> devices; ///< resolved device list
  network_options network;
  cluster_secret secret; ///< what every peer must prove (auth.hpp)
  std::shared_ptr<const tls_context> tls; ///< set: mutual TLS (tls.hpp)
  bool insecure = false; ///< allow a non-loopback address with neither
  /// The roles a peer may have spawned here (a node never spawns, say, a
  /// coordinator for a peer); empty: none.
  std::vector<std::string> roles;
  /// Checks a spawn request (role, arguments) before anything is spawned:
  /// "" to go ahead, else the cause, which the peer gets. Unset: none.
  std::function<std::string(const std::string&, const caf::message&)>
      check_spawn;
};

/// Runs a node until SIGINT or SIGTERM: publishes the node manager and calls
/// on_listening once it listens (the CLI prints the address there).
/// `register_types` adds the actor and message types. Returns the process
/// exit code (3 if the address cannot be bound, 2 if it is not loopback
/// and there is neither a secret, nor TLS, nor `insecure`).
int run_node(
    const node_options& opts,
    const std::function<void(caf::actor_system_config&)>& register_types,
    const std::function<void(const node_info&)>& on_listening);

/// What peers dial for a node listening on `host`: `advertise` if given;
/// for a wildcard (0.0.0.0, ::, empty) this machine's first up,
/// non-loopback IPv4 address, else its host name; else `host`.
std::string advertised_host(const std::string& host,
                            const std::string& advertise);

/// Cores and memory of this machine.
std::int64_t machine_cores();
std::int64_t machine_memory_bytes();

/// Splits "host:port"; throws std::invalid_argument naming the text.
std::pair<std::string, std::uint16_t> parse_address(const std::string& text);

} // namespace troupe::runtime

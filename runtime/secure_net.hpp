#pragma once
/// \file CAF's network behind the cluster secret. Every CAF connection of a
/// troupe process, in and out, goes through a middleman actor of ours that
/// runs the handshake of auth.hpp before BASP sees a byte: a listening port
/// is served by an auth_gate whose admitted sockets become BASP
/// connections, and an outgoing connection proves the secret before it is
/// handed to BASP; with TLS, BASP reads and writes through the TLS
/// connection the handshake ran in. CAF's own
/// `middleman().publish/remote_actor` are not used anywhere (they would open an
/// unguarded port). Heavy (CAF).
#include "runtime/auth.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace troupe::runtime {

/// How this process guards its CAF connections.
struct net_security {
  cluster_secret secret;                  ///< unset: no secret (see auth.hpp)
  std::shared_ptr<const tls_context> tls; ///< set: mutual TLS (tls.hpp)
  gate_limits limits;                     ///< for listening ports
  double connect_timeout_s = 10; ///< TCP connect plus handshake, outgoing
  std::string who = "troupe";    ///< prefixes log lines
};

/// The guarded middleman actor of an actor system, while this lives: made
/// (once, before any publish or connect) and registered by name; stopped
/// and awaited by the destructor, which must run before the system goes
/// (the actor holds CAF's BASP broker, and the system would wait forever).
class secure_net {
public:
  secure_net(caf::actor_system& sys, const net_security& sec);
  ~secure_net();
  secure_net(const secure_net&) = delete;
  secure_net& operator=(const secure_net&) = delete;

private:
  caf::actor_system& sys_;
};

/// CAF connections a process holds open at once, in and out; a listener
/// closes what would exceed it (a cluster needs one per peer process).
constexpr int max_caf_connections = 1024;

/// The guarded middleman actor (caf::io::middleman_actor interface): send
/// it connect_atom, publish_atom, unpublish_atom as CAF's own.
caf::actor secure_middleman(caf::actor_system& sys);

/// Publishes `whom` on host:port (0: the OS picks) behind the gate; the
/// port, or an error naming the cause.
caf::expected<std::uint16_t> secure_publish(caf::actor_system& sys,
                                            const caf::actor& whom,
                                            std::uint16_t port,
                                            const std::string& host);

/// Stops serving `whom` on port.
void secure_unpublish(caf::actor_system& sys, const caf::actor& whom,
                      std::uint16_t port);

/// The actor published at host:port, reached after the handshake; an error
/// whose text names the peer and the cause (auth_error's text for a
/// refused secret) otherwise. Blocks up to connect_timeout_s plus a margin.
caf::expected<caf::actor> secure_remote_actor(caf::actor_system& sys,
                                              const std::string& host,
                                              std::uint16_t port);

/// CAF messages from peers larger than this process's limit close the
/// connection before anything is allocated for them (a guard on BASP's
/// framing; CAF itself allocates what any header declares). The limit
/// starts at 64 MiB and is raised, never lowered, to what the jobs this
/// process serves can send in one message (actors/memory_plan.hpp,
/// largest_message).
void raise_message_limit(double bytes);

/// The text of an error from the functions above: the sentence they put
/// in it (naming the peer and the cause), else CAF's rendering.
std::string describe(caf::actor_system& sys, const caf::error& e);

} // namespace troupe::runtime

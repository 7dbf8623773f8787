#pragma once
/// \file Reaching the nodes of a job: starting local node processes on
/// loopback, connecting to node managers with bounded waits, and stopping
/// every process started. Heavy (CAF); for the driver only.
#include "runtime/auth.hpp"
#include "runtime/node_protocol.hpp"

#include <chrono>
#include <stdexcept>
#include <string>
#include <sys/types.h>
#include <vector>

namespace troupe::runtime {

/// A node could not be started or reached; what() names the address.
/// `troupe run` exits with code 3 on it.
class cluster_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A node the driver is connected to.
struct node_handle {
  std::string address; ///< host:port as given
  node_info info;
  caf::actor manager;
};

/// Node processes started on 127.0.0.1 by this process (`troupe node` from
/// the same executable). They also die with their parent (PDEATHSIG).
class local_nodes {
public:
  /// Starts n nodes named node0..node{n-1} that require `secret` (and,
  /// with a tls_dir, TLS certificates of its CA); waits at most `timeout`
  /// for each to print its address. Throws cluster_error.
  local_nodes(const std::string& executable, int n, const network_options& net,
              const cluster_secret& secret, std::chrono::milliseconds timeout,
              const std::string& tls_dir = {});
  ~local_nodes();
  local_nodes(const local_nodes&) = delete;
  local_nodes& operator=(const local_nodes&) = delete;

  const std::vector<std::string>& addresses() const { return addresses_; }
  const std::vector<pid_t>& pids() const { return pids_; }
  /// SIGTERM, then SIGKILL after a grace period; reaps every child.
  void stop();

private:
  std::vector<pid_t> pids_;
  std::vector<std::string> addresses_;
};

/// The actor published at `address` (HOST:PORT), within `timeout`. Throws
/// cluster_error naming the address.
caf::actor connect_actor(caf::actor_system& sys, const std::string& address,
                         std::chrono::milliseconds timeout);

/// Connects to each node manager and fetches its node_info, each within
/// `timeout`. Throws cluster_error naming the first address that fails.
std::vector<node_handle>
connect_nodes(caf::actor_system& sys, const std::vector<std::string>& addresses,
              std::chrono::milliseconds timeout);

/// Kills (SIGKILL) every child process started by local_nodes that is still
/// running and waits for each: safe to call from a signal handler.
void kill_local_nodes_from_signal_handler();

} // namespace troupe::runtime

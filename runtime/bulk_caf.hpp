#pragma once
/// \file The data plane (bulk.hpp) wired to CAF: frames become messages in
/// the mailbox of the actor they name, and sends to actors in other
/// processes go through the plane when it knows their process. Heavy (CAF).
#include "runtime/bulk.hpp"

#include <caf/fwd.hpp>

#include <memory>

namespace troupe::runtime {

/// Turns a frame into the message its receiver expects. Set once, by the
/// layer that defines the frame kinds, before any plane starts.
using bulk_decoder =
    std::function<caf::message(bulk_header&&, devices::tensor&&)>;
void set_bulk_decoder(bulk_decoder decoder);

/// Starts this process's data plane on host, delivering frames into `sys`,
/// and makes it the process plane; peers must prove `secret`. Stop it
/// (stop_bulk_plane) before `sys` goes.
std::shared_ptr<bulk_plane> start_bulk_plane(caf::actor_system& sys,
                                             const std::string& host,
                                             double send_timeout_s,
                                             const cluster_secret& secret,
                                             const std::string& who);

/// Clears the process plane and waits for its reader threads.
void stop_bulk_plane(std::shared_ptr<bulk_plane>& plane);

/// The key of a process on the plane: its CAF node id as text.
std::string bulk_key(const caf::node_id& node);

/// Sends a frame to `dest` over the process plane when dest lives in
/// another process the plane knows; false when it does not (or the send
/// failed), and the caller sends through CAF instead.
bool bulk_send(const caf::actor& dest, std::uint32_t kind,
               std::vector<std::int64_t> tags, const devices::tensor& payload);

} // namespace troupe::runtime

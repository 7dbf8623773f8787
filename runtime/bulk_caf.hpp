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

/// Starts this process's data plane on host, delivering frames into `sys`
/// to actors filed under the job their connection was opened for (others
/// are dropped with a log line),
/// and makes it the process plane; peers must prove `secret` (and with
/// `tls`, hold a certificate of the cluster's CA). Stop it
/// (stop_bulk_plane) before `sys` goes.
std::shared_ptr<bulk_plane>
start_bulk_plane(caf::actor_system& sys, const std::string& host,
                 double send_timeout_s, const cluster_secret& secret,
                 const std::string& who,
                 std::shared_ptr<const tls_context> tls = nullptr);

/// Clears the process plane and waits for its reader threads.
void stop_bulk_plane(std::shared_ptr<bulk_plane>& plane);

/// The key of a process on the plane: its CAF node id as text.
std::string bulk_key(const caf::node_id& node);

/// The tag of a job id on the data plane (the first 8 bytes of its
/// SHA-256): a connection is opened for one job and names it by this.
std::uint64_t job_tag(const std::string& job_id);

/// Files an actor of this process under a job: frames reach it only on
/// connections opened for that job, and it sends on such connections.
/// Node managers file what they spawn, drivers their coordinator.
void bind_to_job(caf::actor_id actor, std::uint64_t tag);
/// Takes an actor out again (it ended, or its job was stopped).
void unbind_from_job(caf::actor_id actor);

/// Sends a frame from `from` (an actor of this process filed under a job)
/// to `dest` over the process plane, on a connection opened for from's
/// job, when dest lives in another process the plane knows. Never waits on
/// the peer: the frame is queued for the connection's thread, and one the
/// plane then cannot deliver goes to `dest` through CAF. False when the
/// plane does not take it (no plane, an unknown or failing peer, a full
/// queue, `from` filed under no job): the caller sends through CAF.
bool bulk_send(caf::actor_id from, const caf::actor& dest, std::uint32_t kind,
               std::vector<std::int64_t> tags, const devices::tensor& payload);

} // namespace troupe::runtime

#pragma once
/// \file The data plane: tensors between processes on TCP connections of
/// their own, beside CAF's. CAF 0.17 carries a tensor through its I/O thread
/// with three to four copies and two thread hand-offs per hop; here a
/// sender thread per connection writes the payload straight from the
/// sending actor's buffer (the actor only queues it, and never waits on a
/// peer), and a reader thread per connection reads it straight into the
/// receiving tensor.
/// A connection is opened for one job: after the handshake the sender
/// names it (a u64 job tag, bulk_caf.hpp's job_tag), and every frame on
/// the connection is for that job. Frames: u32 header length, a Cap'n
/// Proto BulkFrame (schema/troupe.capnp), then the raw little-endian
/// payload. CAF-free; bulk_caf.hpp delivers frames to actors of the job.
#include "devices/tensor.hpp"
#include "runtime/auth.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct iovec;

namespace troupe::runtime {

/// What travels with a payload.
struct bulk_header {
  std::uint64_t dest = 0; ///< receiving actor's id in the peer process
  std::uint32_t kind = 0; ///< meaning of the tags, up to the sender's layer
  std::vector<std::int64_t> tags;
};

/// Encodes a frame header (length prefix included) for `payload`'s shape.
std::vector<std::uint8_t> encode_bulk_header(const bulk_header& h,
                                             const devices::tensor& payload);
/// The same for a payload of `shape`.
std::vector<std::uint8_t> encode_bulk_header(const bulk_header& h,
                                             const devices::shape_t& shape);

/// Largest header accepted (a longer length prefix means a corrupt stream).
constexpr std::uint32_t max_bulk_header_bytes = 1 << 16;

/// Largest payload accepted, in float32 elements (4 MiB): senders cut
/// slices into pieces of at most 1 MiB (actors' chunk_elements), so a
/// frame declaring more is not from a peer of ours, and is refused before
/// anything is allocated for it.
constexpr std::uint64_t max_bulk_elements = std::uint64_t{1} << 20;

/// Decodes a header message (without the length prefix); returns the header
/// and the shape of the payload that follows. Throws wire_error.
std::pair<bulk_header, devices::shape_t>
decode_bulk_header(const std::uint8_t* data, std::size_t bytes);

/// One process's end of the data plane: a listener, a reader thread per
/// inbound connection, and outbound connections opened on first use.
class bulk_plane {
public:
  /// Called on a reader thread for each frame received, with the job tag
  /// its connection was opened for.
  using handler =
      std::function<void(std::uint64_t job, bulk_header&&, devices::tensor&&)>;

  /// Listens on host with an OS-chosen port and, unless same_host_sockets
  /// is false, on a Unix socket (Linux abstract namespace) that peers on
  /// the same machine use instead of TCP: on loopback it moves bytes about
  /// twice as fast. send_timeout_s bounds a write to a peer that stopped
  /// reading, and the rest of a frame once its first bytes came; the
  /// connection is dropped after it. Every connection, in or out, proves
  /// `secret` first (auth.hpp, channel bulk), and with `tls` runs inside
  /// mutual TLS (tls.hpp; the same-machine socket too); `who` prefixes log
  /// lines. Throws std::runtime_error when it cannot listen.
  bulk_plane(const std::string& host, handler on_frame,
             double send_timeout_s = 5, bool same_host_sockets = true,
             const cluster_secret& secret = {},
             std::string who = "troupe data plane",
             std::shared_ptr<const tls_context> tls = nullptr);
  ~bulk_plane();
  bulk_plane(const bulk_plane&) = delete;
  bulk_plane& operator=(const bulk_plane&) = delete;

  /// What peers connect to: "host:port", then, with a Unix socket,
  /// ";unix=NAME;boot=ID" (ID: this machine's boot id, so that a peer can
  /// tell it shares the machine).
  const std::string& address() const { return address_; }

  /// Names the data-plane address of a peer process (its key: CAF's node
  /// id as text).
  void set_peer(const std::string& key, const std::string& address);
  bool knows(const std::string& key) const;

  /// Forgets a peer that is lost (killed, or frozen): a send blocked on it
  /// returns false at once (its connection is shut down), and later sends
  /// to it fail at once instead of waiting for send_timeout_s.
  void forget_peer(const std::string& key);

  /// A frame the plane took and could not deliver: its connection could
  /// not be opened, or broke before the frame was fully written (the peer
  /// drops a partial frame). Given back, on the connection's sender
  /// thread, for the caller's fallback; a frame fully written before a
  /// failure is never given back (the peer may have it).
  using undelivered = std::function<void(bulk_header&&, devices::tensor&&)>;

  /// Queues one frame of job `job` for a peer and returns at once: a
  /// sender thread per connection (one per peer and job) opens it and
  /// writes its frames in the order queued, so no caller ever waits on a
  /// peer. The payload is shared, not copied: it must not change until
  /// written (published tensors never do). Returns false, queuing nothing,
  /// when the peer is unknown or forgotten, its connection failed less
  /// than 4 x send_timeout_s ago, or max_queued_bytes wait for it already:
  /// the caller sends another way. A queued frame that is not delivered
  /// goes to `on_undelivered` (not for a forgotten peer, or when the plane
  /// stops: those are dropped).
  bool send(const std::string& key, std::uint64_t job, const bulk_header& h,
            const devices::tensor& payload,
            undelivered on_undelivered = nullptr);

  /// Waits until every frame queued so far is written or given back;
  /// false when that takes longer than `timeout`.
  bool drain(std::chrono::milliseconds timeout);

  /// Bytes that may wait for one connection before send() says no.
  static constexpr std::size_t max_queued_bytes = std::size_t{64} << 20;

  /// Frames received and sent so far (for tests and metrics).
  std::int64_t frames_received() const { return received_; }
  std::int64_t frames_sent() const { return sent_; }
  /// Inbound connections served at once; more are closed unread.
  static constexpr std::size_t max_inbound = 256;

private:
  struct frame {
    std::vector<std::uint8_t> head; // encoded, length prefix included
    bulk_header header;             // for on_undelivered
    devices::tensor payload;
    undelivered on_undelivered;
    std::size_t done = 0; // bytes written already (by the caller)
  };
  // One connection (peer, job) and the thread that writes its frames.
  struct outbound {
    std::string address;
    std::uint64_t job = 0;
    std::mutex lock; // the fields below
    std::condition_variable wake;
    std::deque<frame> queue;
    std::size_t queued_bytes = 0;
    bool busy = false;       // a frame is being written (thread or caller)
    bool plain = false;      // connected, without TLS: callers may write
    bool closing = false;    // forgotten, or the plane stops: drop the rest
    std::atomic<int> fd{-1}; // shut down by forget_peer to wake it
    std::unique_ptr<tls_stream> tls; // over fd, with TLS (sender's only)
    // When the connection last failed: a peer that stopped reading is not
    // reconnected to (and waited on again) for a while.
    std::chrono::steady_clock::time_point failed_at{};
    std::thread thread;
  };
  struct link;
  void admit(int fd, std::unique_ptr<tls_stream> tls, const std::string& peer);
  void read_loop(const link& l);
  bool read_exact(const link& l, void* buf, std::size_t n, int timeout_ms = -1);
  bool write_all(const link& l, iovec* iov, int count);
  int connect_socket(const std::string& address); // -1 when it fails
  // The secret's handshake (and TLS) on a connected socket, then the job's
  // tag; false when it fails.
  bool handshake(int fd, const std::string& address, std::uint64_t job,
                 std::unique_ptr<tls_stream>& tls);
  void reap_finished(); // joins readers that ended; lock_ held
  void send_loop(outbound& o);
  // Stops an outbound's thread (closing) without waiting for it.
  static void close_outbound(outbound& o);

  handler on_frame_;
  double send_timeout_s_;
  cluster_secret secret_;
  std::string who_;
  std::shared_ptr<const tls_context> tls_;
  std::string address_;
  int listen_fd_ = -1;
  int unix_fd_ = -1; // same-machine listener, or -1
  std::string boot_id_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<auth_gate> gate_;
  mutable std::mutex lock_; // peers_, out_, readers_, finished_, inbound_fds_
  // inbound_fds_: open inbound connections; each reader closes its own and
  // files its thread id in finished_ for the next admit (or the
  // destructor) to join.
  std::map<std::string, std::string> peers_;
  // By peer key and job tag.
  std::map<std::pair<std::string, std::uint64_t>, std::shared_ptr<outbound>>
      out_;
  // Forgotten connections whose threads are still to be joined.
  std::vector<std::shared_ptr<outbound>> retired_;
  std::map<std::thread::id, std::thread> readers_;
  std::vector<std::thread::id> finished_;
  std::vector<int> inbound_fds_;
  std::int64_t turned_away_ = 0;
  std::atomic<std::int64_t> received_{0};
  std::atomic<std::int64_t> sent_{0};
};

/// The plane of this process, or null: nodes and drivers of distributed
/// jobs start one; everything else uses CAF alone. A sender holds it for
/// the length of a send (a queuing), so clearing it never pulls it from
/// under one.
std::shared_ptr<bulk_plane> process_bulk_plane();
void set_process_bulk_plane(std::shared_ptr<bulk_plane> plane);

} // namespace troupe::runtime

#pragma once
/// \file Who may talk to a troupe process: the cluster secret and the
/// handshake that proves it on every connection, CAF port and data plane
/// alike, before a byte of the protocol behind it is read (DESIGN §9).
///
/// Handshake (HMAC-SHA256; the secret never crosses the wire):
///   server -> client  hello:  "TRPH" ver channel flags 0 | nonce_s[32]
///   client -> server  proof:  "TRPC" ver channel 0 0 | nonce_c[32] |
///                     HMAC(key, "troupe-client" channel nonce_s nonce_c)
///   server -> client  answer: status 0*7 |
///                     HMAC(key, "troupe-server" channel nonce_c nonce_s)
/// flags bit 0: the server requires a secret; bit 1: TLS (tls.hpp). A TLS
/// server sends the first 8 bytes of its hello in the clear, then runs the
/// TLS handshake (mutual: both sides present a certificate of the
/// cluster's CA), and sends the whole hello and everything after it inside
/// TLS. A client that has TLS and a server that has none, or the other way
/// round, stop after those 8 bytes with a message naming the mismatch.
/// Each side checks the other's
/// MAC, so a client with a secret also knows the server holds it. A server
/// without a secret (an `--insecure` node, or one on loopback with none)
/// accepts any proof; a client with a secret refuses such a server.
/// CAF-free.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace troupe::runtime {

class tls_context;
class tls_stream;

/// The key every process of a cluster shares; unset means "no secret".
struct cluster_secret {
  std::array<std::uint8_t, 32> key{};
  bool set = false;
};

/// A handshake was refused or broke off; what() names the peer and cause.
/// Clients exit with code 3 on it.
class auth_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A secret file or variable is unusable; what() names it and the cause.
class secret_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// 32 fresh random bytes (OpenSSL's RAND_bytes).
cluster_secret make_secret();

/// The secret as 64 lower-case hex digits (what `troupe secret` prints).
std::string secret_to_hex(const cluster_secret& s);

/// Parses 64 hex digits (surrounding white space allowed); `origin` names
/// where the text came from in the message of the secret_error it throws.
cluster_secret parse_secret(const std::string& text, const std::string& origin);

/// Reads a secret file. Refuses (secret_error) a file that group or others
/// may read, as ssh does for keys, a missing one, and one that does not
/// hold exactly one secret.
cluster_secret load_secret_file(const std::string& path);

/// The secret named by the environment: TROUPE_SECRET_FILE (a file), or
/// TROUPE_SECRET (the hex digits; how `troupe run` hands the per-job secret
/// to the local nodes it starts). Unset when neither is there.
cluster_secret secret_from_environment();

/// Writes `s` to a new file only this user may read (0600, refusing to
/// replace one); throws secret_error naming the file.
void write_secret_file(const std::string& path, const cluster_secret& s);

/// Where a driver that made a per-job secret leaves it for `troupe status`
/// and `troupe kill` of the same user: a 0600 file in a 0700 directory of
/// this user, named by the coordinator's address.
std::string job_secret_path(const std::string& coordinator_address);

/// Which port a connection is for: a proof for one is refused by the other.
enum class auth_channel : std::uint8_t { caf = 1, bulk = 2 };

/// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

/// The client side, on a connected blocking or non-blocking socket, within
/// `deadline`. `peer` names the other end in messages. With `tls`, the
/// server must use TLS too, and the TLS connection that carries everything
/// after the handshake is returned; without, null. Throws auth_error.
std::unique_ptr<tls_stream>
client_handshake(int fd, const cluster_secret& secret, auth_channel ch,
                 const std::string& peer,
                 std::chrono::steady_clock::time_point deadline,
                 const std::shared_ptr<const tls_context>& tls = nullptr);

/// Counters of a gate, for logs, tests and `troupe status`.
struct gate_stats {
  std::int64_t accepted = 0;  ///< connections that proved the secret
  std::int64_t refused = 0;   ///< wrong secret, garbage, wrong channel
  std::int64_t timed_out = 0; ///< no proof within the deadline
  std::int64_t shed = 0;      ///< closed unread: too many pending
};

/// Limits of a gate.
struct gate_limits {
  double handshake_timeout_s = 5; ///< a proof must arrive within this
  std::size_t max_pending = 64;   ///< handshakes in flight; the oldest is
                                  ///< dropped when a new one would exceed it
};

/// The server side: one thread that accepts on listening sockets, runs the
/// handshake of every new connection without blocking on any of them, and
/// hands each connection that proved the secret to `on_ready` (on the
/// gate's thread; on_ready owns the descriptor from then on, in blocking
/// mode, and with `tls`, the TLS connection over it). Connections
/// that fail are closed with a line on stderr (the first ten, then one in
/// a thousand).
class auth_gate {
public:
  using ready_handler = std::function<void(
      int fd, std::unique_ptr<tls_stream> tls, const std::string& peer)>;

  /// Takes ownership of the listening descriptors. `who` prefixes log lines
  /// ("troupe node node0", ...).
  auth_gate(std::vector<int> listen_fds, const cluster_secret& secret,
            auth_channel ch, ready_handler on_ready, std::string who,
            gate_limits limits = {},
            std::shared_ptr<const tls_context> tls = nullptr);
  /// Stops accepting, closes pending connections and the listeners, and
  /// joins the thread.
  ~auth_gate();
  auth_gate(const auth_gate&) = delete;
  auth_gate& operator=(const auth_gate&) = delete;

  gate_stats stats() const;

private:
  struct pending;
  void loop();
  void advance(pending& p);
  void judge(pending& p);
  void finish(pending& p, const char* outcome, const std::string& why);

  std::vector<int> listen_fds_;
  cluster_secret secret_;
  auth_channel channel_;
  ready_handler on_ready_;
  std::string who_;
  gate_limits limits_;
  std::shared_ptr<const tls_context> tls_;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  mutable std::mutex stats_lock_;
  gate_stats stats_;
  std::int64_t logged_ = 0;
  std::thread thread_;
};

} // namespace troupe::runtime

#pragma once
/// \file Mutual TLS for every connection of a cluster that is given a TLS
/// directory (`--tls-dir DIR`): CAF's ports and the data plane alike. DIR
/// holds the cluster's CA certificate (ca.pem), this member's certificate
/// (cert.pem) and its private key (key.pem, 0600). A peer is a member when
/// its certificate chains to the CA; both sides present one (TLS 1.3 only,
/// no session tickets). `troupe cert` makes the CA and the members'
/// certificates (make_ca, issue_cert). CAF-free.
///
/// CAF 0.17's own openssl module is not used: it speaks TLS 1.2 only,
/// builds a new SSL context (re-reading the files) per connection, and
/// takes its settings from the actor system's config in place of the
/// guarded middleman actor of secure_net.hpp.
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

struct ssl_ctx_st;
struct ssl_st;

namespace troupe::runtime {

/// A TLS directory or certificate is unusable; what() names the file and
/// the cause.
class tls_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The files of a TLS directory.
struct tls_paths {
  std::string ca;   ///< the cluster's CA certificate: DIR/ca.pem
  std::string cert; ///< this member's certificate: DIR/cert.pem
  std::string key;  ///< its private key: DIR/key.pem
};
tls_paths tls_paths_in(const std::string& dir);

/// The loaded TLS settings of this process, shared by its connections.
class tls_context {
public:
  /// Loads DIR's files and checks them: the key is only this user's to
  /// read, it belongs to the certificate, and the certificate chains to
  /// the CA and is within its validity period. Throws tls_error.
  static std::shared_ptr<const tls_context> load(const std::string& dir);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  ssl_ctx_st* native() const { return ctx_; }
  const std::string& dir() const { return dir_; }
  /// The common name of this member's certificate.
  const std::string& name() const { return name_; }

private:
  tls_context() = default;
  ssl_ctx_st* ctx_ = nullptr;
  std::string dir_;
  std::string name_;
};

/// The outcome of one step on a TLS connection.
enum class tls_io {
  ok,         ///< progress (bytes moved, or the handshake finished)
  want_read,  ///< try again when the socket is readable
  want_write, ///< try again when the socket is writable
  closed,     ///< the peer closed the connection
  failed,     ///< a TLS or socket error: error() says which
};

/// One TLS connection on a socket it does not own (the socket's owner
/// closes it after this is gone). Steps never block on a non-blocking
/// socket; used by one thread at a time.
class tls_stream {
public:
  tls_stream(std::shared_ptr<const tls_context> ctx, int fd, bool server);
  ~tls_stream();
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;

  /// One step of the handshake; ok once it is complete and the peer's
  /// certificate was verified.
  tls_io handshake();
  tls_io read(void* buf, std::size_t len, std::size_t& got);
  tls_io write(const void* buf, std::size_t len, std::size_t& put);
  /// Whether bytes are buffered inside TLS (the socket may look idle).
  bool has_pending() const;
  /// From now on, records written are gathered up to `bytes` and reach the
  /// socket together at flush() (or when that much has gathered): a large
  /// payload then costs a few system calls, not one per 16 KiB record.
  void gather_writes(std::size_t bytes);
  /// Sends what gather_writes holds: ok when all went out.
  tls_io flush();
  /// Why the last step failed, in words.
  const std::string& error() const { return error_; }

private:
  tls_io outcome(int ret, const char* what);

  std::shared_ptr<const tls_context> ctx_;
  ssl_st* ssl_ = nullptr;
  std::string error_;
};

/// Runs the handshake of `s` on `fd` (blocking or not) until done or the
/// deadline; "" on success, otherwise what went wrong.
std::string tls_handshake_until(tls_stream& s, int fd,
                                std::chrono::steady_clock::time_point deadline);

/// Makes a cluster CA in `dir` (created 0700 if missing): ca.pem and
/// ca.key (0600), an EC P-256 key, valid for `days`. Refuses to replace
/// either file. Throws tls_error.
void make_ca(const std::string& dir, const std::string& name, int days);

/// Issues a member certificate signed by the CA in `ca_dir` (ca.pem,
/// ca.key) into `out_dir` (created 0700 if missing): ca.pem (a copy),
/// cert.pem and key.pem (0600), for client and server use, with `name` as
/// its common name and `hosts` (DNS names or IP addresses) as its subject
/// alternative names. Refuses to replace files. Throws tls_error.
void issue_cert(const std::string& ca_dir, const std::string& out_dir,
                const std::string& name, const std::vector<std::string>& hosts,
                int days);

} // namespace troupe::runtime

#pragma once
/// \file The live dashboard: an HTTP server (Boost.Beast) in the process
/// that watches a job, serving one page (dashboard.html with Chart.js,
/// both built into the binary: nothing is fetched from elsewhere) and the
/// job's state as JSON (`/api/state`), which the page polls every second.
///
/// The job's state is served only to requests with the token (`?token=` or
/// `Authorization: Bearer`); the URL printed at start has it. The page and
/// scripts, which hold nothing of the job, are served to anyone. Requests
/// are GET/HEAD only, headers at most 8 KiB, 10 s to send one, at most 32
/// connections at once.
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

namespace troupe::watch {

/// The dashboard cannot listen (address in use, not an address).
class dashboard_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

class dashboard_server {
public:
  /// Listens on host:port (port 0: the OS picks) and serves from a thread
  /// of its own; `state` is called there for each /api/state (it must be
  /// thread-safe). Throws dashboard_error.
  dashboard_server(const std::string& host, std::uint16_t port,
                   std::string token, std::function<std::string()> state);
  ~dashboard_server(); ///< stops serving
  dashboard_server(const dashboard_server&) = delete;
  dashboard_server& operator=(const dashboard_server&) = delete;

  std::uint16_t port() const;
  /// http://HOST:PORT/?token=TOKEN
  std::string url() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A dashboard token: with a cluster secret, derived from it (anyone with
/// the secret can make it: HMAC-SHA256(secret, "troupe dashboard"), 32 hex
/// digits); without one, 32 random hex digits.
std::string dashboard_token(const std::string& secret_bytes);

} // namespace troupe::watch

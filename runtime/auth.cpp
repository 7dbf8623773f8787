// The handshake that proves the cluster secret (and runs TLS where it is
// on): the client side and the gate that serves a listening port.
#include "runtime/auth.hpp"
#include "runtime/node_log.hpp"

#include "runtime/tls.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

using clock = std::chrono::steady_clock;
using mac_t = std::array<std::uint8_t, 32>;
using nonce_t = std::array<std::uint8_t, 32>;

constexpr std::uint8_t version = 1;
constexpr std::size_t hello_bytes = 8 + 32;
constexpr std::size_t proof_bytes = 8 + 32 + 32;
constexpr std::size_t answer_bytes = 8 + 32;

enum status : std::uint8_t {
  status_ok = 0,
  status_wrong_secret = 1,
  status_wrong_channel = 2,
  status_malformed = 3,
};

const char* channel_name(auth_channel ch) {
  return ch == auth_channel::caf ? "control (CAF)" : "data-plane";
}

nonce_t random_nonce() {
  nonce_t n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1)
    throw auth_error("cannot draw random bytes (OpenSSL RAND_bytes failed)");
  return n;
}

mac_t mac_of(const cluster_secret& s, const char* label, auth_channel ch,
             const nonce_t& a, const nonce_t& b) {
  std::vector<std::uint8_t> msg(label, label + std::strlen(label));
  msg.push_back(static_cast<std::uint8_t>(ch));
  msg.insert(msg.end(), a.begin(), a.end());
  msg.insert(msg.end(), b.begin(), b.end());
  mac_t out{};
  unsigned len = 0;
  HMAC(EVP_sha256(), s.key.data(), static_cast<int>(s.key.size()), msg.data(),
       msg.size(), out.data(), &len);
  return out;
}

bool same(const mac_t& a, const std::uint8_t* b) {
  return CRYPTO_memcmp(a.data(), b, a.size()) == 0;
}

int millis_left(clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - clock::now())
                        .count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

constexpr std::uint8_t flag_secret = 1;
constexpr std::uint8_t flag_tls = 2;
constexpr std::size_t preamble_bytes = 8; // of the hello, in the clear

// One connection during the handshake: its socket, and TLS over it once
// that is on.
struct link {
  int fd = -1;
  tls_stream* tls = nullptr;
};

enum class step { ok, want_read, want_write, closed, failed };

step from_tls(tls_io r) {
  switch (r) {
    case tls_io::ok:
      return step::ok;
    case tls_io::want_read:
      return step::want_read;
    case tls_io::want_write:
      return step::want_write;
    case tls_io::closed:
      return step::closed;
    default:
      return step::failed;
  }
}

// Moves what it can without blocking; `moved` says how much, `why` what
// failed.
step send_some(const link& l, const std::uint8_t* p, std::size_t n,
               std::size_t& moved, std::string& why) {
  moved = 0;
  if (l.tls != nullptr) {
    const auto r = from_tls(l.tls->write(p, n, moved));
    if (r == step::failed)
      why = l.tls->error();
    return r;
  }
  const auto put = ::send(l.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (put >= 0) {
    moved = static_cast<std::size_t>(put);
    return step::ok;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    return step::want_write;
  why = std::strerror(errno);
  return step::failed;
}

step recv_some(const link& l, std::uint8_t* p, std::size_t n,
               std::size_t& moved, std::string& why) {
  moved = 0;
  if (l.tls != nullptr) {
    const auto r = from_tls(l.tls->read(p, n, moved));
    if (r == step::failed)
      why = l.tls->error();
    return r;
  }
  const auto got = ::recv(l.fd, p, n, MSG_DONTWAIT);
  if (got > 0) {
    moved = static_cast<std::size_t>(got);
    return step::ok;
  }
  if (got == 0)
    return step::closed;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    return step::want_read;
  why = std::strerror(errno);
  return step::failed;
}

// Blocking-with-deadline transfers for the client side; "" on success,
// otherwise what went wrong.
template <class Step>
std::string transfer_all(const link& l, std::uint8_t* p, std::size_t n,
                         clock::time_point deadline, Step&& some) {
  while (n > 0) {
    std::size_t moved = 0;
    std::string why;
    const auto r = some(l, p, n, moved, why);
    p += moved;
    n -= moved;
    if (r == step::closed)
      return "closed the connection";
    if (r == step::failed)
      return why;
    if (r == step::ok)
      continue;
    pollfd pf{l.fd, static_cast<short>(r == step::want_read ? POLLIN : POLLOUT),
              0};
    const int left = millis_left(deadline);
    if (left == 0 || ::poll(&pf, 1, left) == 0)
      return "timed out";
  }
  return {};
}

std::string send_all(const link& l, const std::uint8_t* p, std::size_t n,
                     clock::time_point deadline) {
  return transfer_all(
      l, const_cast<std::uint8_t*>(p), n, deadline,
      [](const link& k, std::uint8_t* q, std::size_t m, std::size_t& moved,
         std::string& why) { return send_some(k, q, m, moved, why); });
}

std::string recv_all(const link& l, std::uint8_t* p, std::size_t n,
                     clock::time_point deadline) {
  return transfer_all(l, p, n, deadline, recv_some);
}

void set_blocking(int fd, bool blocking) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags >= 0)
    ::fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return "a peer";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    return fmt::format("{}:{}", buf, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    return fmt::format("[{}]:{}", buf, ntohs(a->sin6_port));
  }
  return "a local process";
}

} // namespace

std::unique_ptr<tls_stream>
client_handshake(int fd, const cluster_secret& secret, auth_channel ch,
                 const std::string& peer, clock::time_point deadline,
                 const std::shared_ptr<const tls_context>& tls) {
  const auto fail = [&](const std::string& why) {
    throw auth_error(fmt::format("{}: {}", peer, why));
  };
  link l{fd, nullptr};
  std::array<std::uint8_t, hello_bytes> hello{};
  if (auto e = recv_all(l, hello.data(), preamble_bytes, deadline); !e.empty())
    fail(fmt::format("no troupe greeting on its {} port ({})", channel_name(ch),
                     e));
  if (std::memcmp(hello.data(), "TRPH", 4) != 0)
    fail("is not a troupe port (its first bytes are not a troupe greeting)");
  if (hello[4] != version)
    fail(fmt::format("speaks handshake version {}, this troupe {}", hello[4],
                     version));
  if (hello[5] != static_cast<std::uint8_t>(ch))
    fail(fmt::format("is not a {} port", channel_name(ch)));
  const bool server_tls = (hello[6] & flag_tls) != 0;
  if (server_tls && !tls)
    fail("uses TLS, and this process has no certificate: give it the "
         "cluster's --tls-dir (or TROUPE_TLS_DIR)");
  if (!server_tls && tls)
    fail("does not use TLS, and this process does (--tls-dir): start the "
         "node with a --tls-dir of the same CA");
  std::unique_ptr<tls_stream> stream;
  if (tls) {
    try {
      stream = std::make_unique<tls_stream>(tls, fd, false);
    } catch (const tls_error& e) {
      fail(e.what());
    }
    if (auto e = tls_handshake_until(*stream, fd, deadline); !e.empty())
      fail(e);
    l.tls = stream.get();
    // The whole hello again, inside TLS: the clear bytes are not trusted.
    std::array<std::uint8_t, preamble_bytes> clear{};
    std::copy(hello.begin(), hello.begin() + preamble_bytes, clear.begin());
    if (auto e = recv_all(l, hello.data(), hello.size(), deadline);
        !e.empty()) {
      if (e.find("alert") != std::string::npos)
        fail(fmt::format("refused this process's certificate ({}): is "
                         "{}/cert.pem issued by the cluster's CA?",
                         e, tls->dir()));
      fail(fmt::format("handshake broke off ({})", e));
    }
    if (!std::equal(clear.begin(), clear.end(), hello.begin()))
      fail("its greeting inside TLS differs from the one before it");
  } else if (auto e = recv_all(l, hello.data() + preamble_bytes,
                               hello.size() - preamble_bytes, deadline);
             !e.empty()) {
    fail(fmt::format("no troupe greeting on its {} port ({})", channel_name(ch),
                     e));
  }
  const bool server_requires = (hello[6] & flag_secret) != 0;
  if (!server_requires && secret.set)
    fail("does not use a cluster secret, and this process has one: give the "
         "node the same --secret-file (or TROUPE_SECRET_FILE)");
  nonce_t server_nonce;
  std::copy(hello.begin() + 8, hello.end(), server_nonce.begin());
  const auto nonce = random_nonce();
  std::array<std::uint8_t, proof_bytes> proof{};
  std::memcpy(proof.data(), "TRPC", 4);
  proof[4] = version;
  proof[5] = static_cast<std::uint8_t>(ch);
  std::copy(nonce.begin(), nonce.end(), proof.begin() + 8);
  const auto mac = mac_of(secret, "troupe-client", ch, server_nonce, nonce);
  std::copy(mac.begin(), mac.end(), proof.begin() + 40);
  if (auto e = send_all(l, proof.data(), proof.size(), deadline); !e.empty())
    fail(fmt::format("handshake broke off ({})", e));
  std::array<std::uint8_t, answer_bytes> answer{};
  if (auto e = recv_all(l, answer.data(), answer.size(), deadline);
      !e.empty()) {
    if (tls && e.find("alert") != std::string::npos)
      fail(fmt::format("refused this process's certificate ({}): is "
                       "{}/cert.pem issued by the cluster's CA?",
                       e, tls->dir()));
    fail(fmt::format("handshake broke off ({})", e));
  }
  if (answer[0] == status_wrong_secret)
    fail(secret.set ? "refused this process's cluster secret (the secret "
                      "files differ)"
                    : "requires the cluster secret: pass --secret-file FILE "
                      "or set TROUPE_SECRET_FILE");
  if (answer[0] == status_wrong_channel)
    fail(fmt::format("is not a {} port", channel_name(ch)));
  if (answer[0] != status_ok)
    fail(fmt::format("refused the handshake (status {})", answer[0]));
  if (secret.set &&
      !same(mac_of(secret, "troupe-server", ch, nonce, server_nonce),
            answer.data() + 8))
    fail("answered without proving the cluster secret (an impostor, or a "
         "node with another secret)");
  return stream;
}

// One connection between accept and proof.
struct auth_gate::pending {
  enum class phase {
    greet,     // sending the hello (with TLS: its clear 8 bytes)
    handshake, // TLS handshake
    hello,     // sending the whole hello inside TLS
    proof,     // receiving the client's proof
    answer,    // sending the answer; then the connection is ready
  };
  int fd = -1;
  std::string peer;
  clock::time_point deadline;
  nonce_t nonce{};
  std::unique_ptr<tls_stream> tls;
  phase at = phase::greet;
  short wants = POLLOUT;           // what the next step waits for
  std::vector<std::uint8_t> hello; // the whole hello
  std::vector<std::uint8_t> out;   // bytes still to send
  std::size_t sent = 0;
  std::array<std::uint8_t, proof_bytes> in{};
  std::size_t got = 0;
};

auth_gate::auth_gate(std::vector<int> listen_fds, const cluster_secret& secret,
                     auth_channel ch, ready_handler on_ready, std::string who,
                     gate_limits limits, std::shared_ptr<const tls_context> tls)
  : listen_fds_(std::move(listen_fds))
  , secret_(secret)
  , channel_(ch)
  , on_ready_(std::move(on_ready))
  , who_(std::move(who))
  , limits_(limits)
  , tls_(std::move(tls)) {
  if (::pipe2(wake_, O_CLOEXEC) != 0) {
    for (int fd : listen_fds_)
      ::close(fd);
    throw std::runtime_error(
        fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  }
  for (int fd : listen_fds_)
    set_blocking(fd, false);
  thread_ = std::thread([this] { loop(); });
}

auth_gate::~auth_gate() {
  stopping_ = true;
  char c = 0;
  [[maybe_unused]] auto n = ::write(wake_[1], &c, 1);
  thread_.join();
  for (int fd : listen_fds_)
    ::close(fd);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

gate_stats auth_gate::stats() const {
  std::lock_guard<std::mutex> guard(stats_lock_);
  return stats_;
}

void auth_gate::finish(pending& p, const char* outcome,
                       const std::string& why) {
  {
    std::lock_guard<std::mutex> guard(stats_lock_);
    if (std::strcmp(outcome, "timed out") == 0)
      ++stats_.timed_out;
    else if (std::strcmp(outcome, "shed") == 0)
      ++stats_.shed;
    else
      ++stats_.refused;
  }
  // A flood must not flood the log: the first ten, then one in a thousand.
  ++logged_;
  if (logged_ <= 10 || logged_ % 1000 == 0) {
    std::fprintf(stderr,
                 "%s: refused a %s connection from %s: %s (%lld refused so "
                 "far)\n",
                 who_.c_str(), channel_name(channel_), p.peer.c_str(),
                 why.c_str(), static_cast<long long>(logged_));
    node_log("connection_refused", {}, {},
             fmt::format("{} connection from {}: {} ({} refused so far)",
                         channel_name(channel_), p.peer, why, logged_));
  }
  p.tls.reset();
  ::close(p.fd);
  p.fd = -1;
}

// Judges a complete proof: queues the answer, or refuses.
void auth_gate::judge(pending& p) {
  std::uint8_t verdict = status_ok;
  std::string why;
  nonce_t client_nonce;
  std::copy(p.in.begin() + 8, p.in.begin() + 40, client_nonce.begin());
  if (std::memcmp(p.in.data(), "TRPC", 4) != 0 || p.in[4] != version) {
    verdict = status_malformed;
    why = "not a troupe handshake";
  } else if (p.in[5] != static_cast<std::uint8_t>(channel_)) {
    verdict = status_wrong_channel;
    why = "a handshake for another port";
  } else if (secret_.set && !same(mac_of(secret_, "troupe-client", channel_,
                                         p.nonce, client_nonce),
                                  p.in.data() + 40)) {
    verdict = status_wrong_secret;
    why = "wrong or missing cluster secret";
  }
  std::vector<std::uint8_t> answer(answer_bytes, 0);
  answer[0] = verdict;
  if (verdict != status_ok) {
    // Best effort: the client learns why; nothing more is read.
    std::size_t moved = 0;
    std::string ignored;
    send_some(link{p.fd, p.tls.get()}, answer.data(), answer.size(), moved,
              ignored);
    finish(p, "refused", why);
    return;
  }
  if (secret_.set) {
    const auto mac =
        mac_of(secret_, "troupe-server", channel_, client_nonce, p.nonce);
    std::copy(mac.begin(), mac.end(), answer.begin() + 8);
  }
  p.out = std::move(answer);
  p.sent = 0;
  p.at = pending::phase::answer;
}

// Steps one handshake as far as it goes without blocking.
void auth_gate::advance(pending& p) {
  using phase = pending::phase;
  while (p.fd >= 0) {
    if (p.at == phase::handshake) {
      const auto r = p.tls->handshake();
      if (r == tls_io::ok) {
        p.at = phase::hello;
        p.out = p.hello;
        p.sent = 0;
        continue;
      }
      if (r == tls_io::want_read || r == tls_io::want_write) {
        p.wants = r == tls_io::want_read ? POLLIN : POLLOUT;
        return;
      }
      finish(p, "refused",
             r == tls_io::closed ? "closed during the TLS handshake"
                                 : p.tls->error());
      return;
    }
    const link l{p.fd, p.at == phase::greet ? nullptr : p.tls.get()};
    std::size_t moved = 0;
    std::string why;
    step r;
    if (p.at == phase::proof)
      r = recv_some(l, p.in.data() + p.got, p.in.size() - p.got, moved, why);
    else
      r = send_some(l, p.out.data() + p.sent, p.out.size() - p.sent, moved,
                    why);
    if (r == step::closed || r == step::failed) {
      finish(p, "refused",
             r == step::closed ? "closed during the handshake" : why);
      return;
    }
    if (r != step::ok) {
      p.wants = r == step::want_read ? POLLIN : POLLOUT;
      return;
    }
    if (p.at == phase::proof) {
      p.got += moved;
      if (p.got == p.in.size())
        judge(p);
      continue;
    }
    p.sent += moved;
    if (p.sent < p.out.size())
      continue;
    if (p.at == phase::greet) {
      p.at = p.tls ? phase::handshake : phase::proof;
    } else if (p.at == phase::hello) {
      p.at = phase::proof;
    } else { // the answer is out: the connection is ready
      const int fd = p.fd;
      p.fd = -1;
      {
        std::lock_guard<std::mutex> guard(stats_lock_);
        ++stats_.accepted;
      }
      set_blocking(fd, true);
      on_ready_(fd, std::move(p.tls), p.peer);
      return;
    }
  }
}

void auth_gate::loop() {
  std::deque<std::unique_ptr<pending>> open;
  const auto timeout = std::chrono::duration_cast<clock::duration>(
      std::chrono::duration<double>(limits_.handshake_timeout_s));
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wake_[0], POLLIN, 0});
    for (int fd : listen_fds_)
      fds.push_back({fd, POLLIN, 0});
    auto next_deadline = clock::time_point::max();
    for (auto& p : open) {
      fds.push_back({p->fd, p->wants, 0});
      next_deadline = std::min(next_deadline, p->deadline);
    }
    const int wait =
        open.empty() ? -1 : std::max(1, millis_left(next_deadline));
    if (::poll(fds.data(), fds.size(), wait) < 0 && errno != EINTR)
      break;
    if (stopping_ || (fds[0].revents & POLLIN) != 0)
      break;
    // Progress on the open handshakes (before new ones shift the indices).
    const auto now = clock::now();
    const std::size_t first = 1 + listen_fds_.size();
    for (std::size_t i = 0; i < open.size(); ++i) {
      auto& p = *open[i];
      if (now >= p.deadline) { // trickling bytes does not extend it
        finish(
            p, "timed out",
            fmt::format("no proof within {} s", limits_.handshake_timeout_s));
        continue;
      }
      if (fds[first + i].revents != 0)
        advance(p);
    }
    open.erase(std::remove_if(open.begin(), open.end(),
                              [](const auto& p) { return p->fd < 0; }),
               open.end());
    // New connections.
    for (std::size_t l = 0; l < listen_fds_.size(); ++l) {
      if ((fds[1 + l].revents & POLLIN) == 0)
        continue;
      for (int burst = 0; burst < 64; ++burst) {
        const int fd = ::accept4(listen_fds_[l], nullptr, nullptr,
                                 SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
          break;
        if (open.size() >= limits_.max_pending) {
          // The oldest waiter goes: a flood of silent connections cannot
          // lock a real peer out for longer than it takes to open more.
          finish(*open.front(), "shed", "too many handshakes in flight");
          open.pop_front();
        }
        auto p = std::make_unique<pending>();
        p->fd = fd;
        p->peer = peer_name(fd);
        p->deadline = clock::now() + timeout;
        try {
          p->nonce = random_nonce();
          if (tls_)
            p->tls = std::make_unique<tls_stream>(tls_, fd, true);
        } catch (const std::exception& e) {
          finish(*p, "refused", e.what());
          continue;
        }
        p->hello.assign(hello_bytes, 0);
        std::memcpy(p->hello.data(), "TRPH", 4);
        p->hello[4] = version;
        p->hello[5] = static_cast<std::uint8_t>(channel_);
        p->hello[6] = static_cast<std::uint8_t>(
            (secret_.set ? flag_secret : 0) | (tls_ ? flag_tls : 0));
        std::copy(p->nonce.begin(), p->nonce.end(), p->hello.begin() + 8);
        p->out.assign(p->hello.begin(),
                      p->hello.begin() + (tls_ ? preamble_bytes : hello_bytes));
        advance(*p);
        if (p->fd >= 0)
          open.push_back(std::move(p));
      }
    }
  }
  for (auto& p : open)
    if (p->fd >= 0) {
      p->tls.reset();
      ::close(p->fd);
    }
}

} // namespace troupe::runtime

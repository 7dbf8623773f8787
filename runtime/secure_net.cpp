#include "runtime/secure_net.hpp"

#include "runtime/tls.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/io/basp_broker.hpp>
#include <caf/io/doorman.hpp>
#include <caf/io/middleman_actor_impl.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/native_socket.hpp>
#include <caf/io/network/stream_impl.hpp>
#include <caf/io/scribe.hpp>
#include <caf/policy/tcp.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

namespace io = caf::io;
namespace net = caf::io::network;

const caf::atom_value registry_name = caf::atom("troupe_mm");

// The largest CAF message this process takes from a peer (see
// raise_message_limit).
std::atomic<std::uint32_t> message_limit{64u << 20};

// CAF connections of this process that are open now, in and out; a
// listener admits no more than max_caf_connections.
std::atomic<int> open_connections{0};

// Reads as CAF's TCP policy does (through TLS, when the connection has it),
// and follows BASP's framing on the way in:
// a 32-byte header whose bytes 4..7 (network order) give the length of the
// payload after it. A header declaring more than the limit fails the read
// that completes it, so the connection closes before BASP sizes a buffer
// for it (CAF 0.17 allocates whatever a header says, up to 4 GiB).
class basp_guard {
public:
  basp_guard(std::shared_ptr<const std::string> who,
             std::shared_ptr<tls_stream> tls)
    : who_(std::move(who))
    , tls_(std::move(tls)) {}

  net::rw_state read_some(std::size_t& result, net::native_socket fd, void* buf,
                          std::size_t len) {
    const auto st = tls_ ? through_tls(tls_->read(buf, len, result), "read")
                         : caf::policy::tcp::read_some(result, fd, buf, len);
    if (st == net::rw_state::success &&
        !follow(static_cast<const std::uint8_t*>(buf), result))
      return net::rw_state::failure;
    return st;
  }
  net::rw_state write_some(std::size_t& result, net::native_socket fd,
                           const void* buf, std::size_t len) {
    if (tls_)
      return through_tls(tls_->write(buf, len, result), "write");
    return caf::policy::tcp::write_some(result, fd, buf, len);
  }
  static bool try_accept(net::native_socket& result, net::native_socket fd) {
    return caf::policy::tcp::try_accept(result, fd);
  }
  // Bytes TLS holds already decrypted are read now: the socket will not
  // report them.
  bool must_read_more(net::native_socket, std::size_t threshold) const {
    return tls_ && threshold > 0 && tls_->has_pending();
  }

private:
  static constexpr std::size_t header_bytes = 32;

  bool follow(const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      if (skip_ > 0) {
        const auto k =
            static_cast<std::size_t>(std::min<std::uint64_t>(skip_, n));
        skip_ -= k;
        p += k;
        n -= k;
        continue;
      }
      const auto k = std::min(header_bytes - have_, n);
      std::memcpy(head_ + have_, p, k);
      have_ += k;
      p += k;
      n -= k;
      if (have_ < header_bytes)
        continue;
      have_ = 0;
      const std::uint32_t len =
          (std::uint32_t{head_[4]} << 24) | (std::uint32_t{head_[5]} << 16) |
          (std::uint32_t{head_[6]} << 8) | std::uint32_t{head_[7]};
      const auto limit = message_limit.load();
      if (len > limit) {
        std::fprintf(stderr,
                     "%s: a peer's message declares %u bytes, over this "
                     "process's limit of %u; closing its connection\n",
                     who_->c_str(), len, limit);
        return false;
      }
      skip_ = len;
    }
    return true;
  }

  // CAF's reading of a step: success with 0 bytes means "try later".
  net::rw_state through_tls(tls_io r, const char* what) {
    if (r == tls_io::ok || r == tls_io::want_read || r == tls_io::want_write)
      return net::rw_state::success;
    if (r == tls_io::failed)
      std::fprintf(stderr, "%s: TLS %s on a CAF connection failed: %s\n",
                   who_->c_str(), what, tls_->error().c_str());
    return net::rw_state::failure;
  }

  std::shared_ptr<const std::string> who_;
  std::shared_ptr<tls_stream> tls_;
  std::uint8_t head_[header_bytes] = {};
  std::size_t have_ = 0;
  std::uint64_t skip_ = 0;
};

// A BASP connection read through basp_guard: a scribe like CAF's own, with
// that read policy.
class guarded_scribe : public io::scribe {
public:
  guarded_scribe(net::default_multiplexer& mpx, net::native_socket fd,
                 std::shared_ptr<const std::string> who,
                 std::shared_ptr<tls_stream> tls)
    : io::scribe(io::connection_handle::from_int(fd))
    , stream_(mpx, fd, std::move(who), std::move(tls)) {
    ++open_connections;
  }
  ~guarded_scribe() override { --open_connections; }

  void configure_read(io::receive_policy::config config) override {
    stream_.configure_read(config);
    if (!launched_) {
      launched_ = true;
      stream_.start(this);
    }
  }
  void ack_writes(bool enable) override { stream_.ack_writes(enable); }
  std::vector<char>& wr_buf() override { return stream_.wr_buf(); }
  std::vector<char>& rd_buf() override { return stream_.rd_buf(); }
  void graceful_shutdown() override {
    stream_.graceful_shutdown();
    detach(&stream_.backend(), false);
  }
  void flush() override { stream_.flush(this); }
  std::string addr() const override {
    auto x = net::remote_addr_of_fd(stream_.fd());
    return x ? *x : std::string{};
  }
  std::uint16_t port() const override {
    auto x = net::remote_port_of_fd(stream_.fd());
    return x ? *x : 0;
  }
  void add_to_loop() override { stream_.activate(this); }
  void remove_from_loop() override { stream_.passivate(); }

private:
  bool launched_ = false;
  net::stream_impl<basp_guard> stream_;
};

io::scribe_ptr make_scribe(net::default_multiplexer& mpx, int fd,
                           const net_security& sec,
                           std::shared_ptr<tls_stream> tls) {
  return caf::make_counted<guarded_scribe>(
      mpx, fd, std::make_shared<const std::string>(sec.who), std::move(tls));
}

// The link between a gate's thread and the doorman it feeds; the doorman
// clears `owner` when it goes, and a connection admitted after that is
// closed instead of adopted.
struct doorman_link {
  std::mutex lock;
  class gated_doorman* owner = nullptr;
};

// A BASP doorman whose listening socket is served by an auth_gate: only
// connections that proved the secret reach BASP, as if accepted here.
class gated_doorman : public io::doorman {
public:
  gated_doorman(net::default_multiplexer& mpx, int listen_fd,
                const net_security& sec)
    : io::doorman(io::accept_handle::from_int(listen_fd))
    , mpx_(mpx)
    , listen_fd_(listen_fd)
    , sec_(sec)
    , link_(std::make_shared<doorman_link>()) {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    if (::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
      char buf[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
      addr_ = buf;
    }
    link_->owner = this;
  }

  ~gated_doorman() override { stop(); }

  // The acceptor is the gate's thread, not the multiplexer: nothing here.
  bool new_connection() override { return false; }

  void launch() override {
    if (gate_ || listen_fd_ < 0)
      return;
    std::weak_ptr<doorman_link> link = link_;
    auto* mpx = &mpx_;
    const int fd = listen_fd_;
    listen_fd_ = -1; // the gate owns it now
    gate_ = std::make_unique<auth_gate>(
        std::vector<int>{fd}, sec_.secret, auth_channel::caf,
        [link, mpx](int conn, std::unique_ptr<tls_stream> tls,
                    const std::string&) {
          std::shared_ptr<tls_stream> shared = std::move(tls);
          mpx->post([link, conn, shared] {
            auto l = link.lock();
            std::unique_lock<std::mutex> guard;
            if (l)
              guard = std::unique_lock<std::mutex>(l->lock);
            if (!l || l->owner == nullptr) {
              ::close(conn);
              return;
            }
            l->owner->adopt(conn, shared);
          });
        },
        sec_.who, sec_.limits, sec_.tls);
  }

  void graceful_shutdown() override {
    stop();
    detach(&mpx_, false);
  }

  std::string addr() const override { return addr_; }
  std::uint16_t port() const override { return port_; }
  void add_to_loop() override {}
  void remove_from_loop() override {}

  // On the multiplexer's thread: the admitted socket becomes a BASP
  // connection of the broker this doorman belongs to.
  void adopt(int fd, std::shared_ptr<tls_stream> tls) {
    if (detached()) {
      tls.reset();
      ::close(fd);
      return;
    }
    if (open_connections.load() >= max_caf_connections) {
      if (turned_away_++ % 1000 == 0)
        std::fprintf(stderr,
                     "%s: %d CAF connections open already; closing a new one "
                     "(%lld so far)\n",
                     sec_.who.c_str(), max_caf_connections,
                     static_cast<long long>(turned_away_));
      tls.reset();
      ::close(fd);
      return;
    }
    net::nonblocking(fd, true);
    net::tcp_nodelay(fd, true);
    auto scribe = make_scribe(mpx_, fd, sec_, std::move(tls));
    auto hdl = scribe->hdl();
    parent()->add_scribe(std::move(scribe));
    io::doorman::new_connection(&mpx_, hdl);
  }

private:
  void stop() {
    {
      std::lock_guard<std::mutex> guard(link_->lock);
      link_->owner = nullptr;
    }
    gate_.reset(); // joins the gate's thread, closes the listener
    if (listen_fd_ >= 0) {
      ::close(listen_fd_);
      listen_fd_ = -1;
    }
  }

  net::default_multiplexer& mpx_;
  int listen_fd_;
  net_security sec_;
  std::shared_ptr<doorman_link> link_;
  std::unique_ptr<auth_gate> gate_;
  std::string addr_;
  std::uint16_t port_ = 0;
  std::int64_t turned_away_ = 0;
};

// CAF's middleman actor with our connect and open: every connection in or
// out proves the secret first.
class secure_middleman_impl : public io::middleman_actor_impl {
public:
  secure_middleman_impl(caf::actor_config& cfg, caf::actor broker,
                        net_security sec)
    : io::middleman_actor_impl(cfg, std::move(broker))
    , sec_(std::move(sec)) {}

  const char* name() const override { return "troupe_middleman"; }

protected:
  caf::expected<io::scribe_ptr> connect(const std::string& host,
                                        std::uint16_t port) override {
    const auto peer = fmt::format("{}:{}", host, port);
    auto fd = net::new_tcp_connection(host, port);
    if (!fd)
      return caf::make_error(caf::sec::cannot_connect_to_node,
                             fmt::format("cannot reach {}: {}", peer,
                                         system().render(fd.error())));
    std::shared_ptr<tls_stream> tls;
    try {
      using namespace std::chrono;
      tls = client_handshake(*fd, sec_.secret, auth_channel::caf, peer,
                             steady_clock::now() +
                                 duration_cast<steady_clock::duration>(
                                     duration<double>(sec_.connect_timeout_s)),
                             sec_.tls);
    } catch (const auth_error& e) {
      ::close(*fd);
      return caf::make_error(caf::sec::cannot_connect_to_node,
                             std::string(e.what()));
    }
    net::nonblocking(*fd, true);
    net::tcp_nodelay(*fd, true);
    return make_scribe(mpx(), *fd, sec_, std::move(tls));
  }

  caf::expected<io::doorman_ptr> open(std::uint16_t port, const char* addr,
                                      bool reuse) override {
    auto fd = net::new_tcp_acceptor_impl(port, addr, reuse);
    if (!fd)
      return std::move(fd.error());
    return caf::make_counted<gated_doorman>(mpx(), *fd, sec_);
  }

private:
  net::default_multiplexer& mpx() {
    return static_cast<net::default_multiplexer&>(
        system().middleman().backend());
  }

  net_security sec_;
};

} // namespace

void raise_message_limit(double bytes) {
  const auto want = static_cast<std::uint32_t>(
      std::min(bytes, double(std::numeric_limits<std::uint32_t>::max())));
  auto now = message_limit.load();
  while (want > now && !message_limit.compare_exchange_weak(now, want)) {
  }
}

std::string describe(caf::actor_system& sys, const caf::error& e) {
  const auto& ctx = e.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return sys.render(e);
}

secure_net::secure_net(caf::actor_system& sys, const net_security& sec)
  : sys_(sys) {
  auto basp = sys.middleman().named_broker<io::basp_broker>(caf::atom("BASP"));
  auto mm = sys.spawn<secure_middleman_impl, caf::detached + caf::hidden>(
      std::move(basp), sec);
  sys.registry().put(registry_name, caf::actor_cast<caf::strong_actor_ptr>(mm));
}

secure_net::~secure_net() {
  auto mm = secure_middleman(sys_);
  sys_.registry().erase(registry_name);
  if (!mm)
    return;
  caf::scoped_actor self{sys_};
  self->send_exit(mm, caf::exit_reason::kill);
  self->wait_for(mm);
}

caf::actor secure_middleman(caf::actor_system& sys) {
  return caf::actor_cast<caf::actor>(sys.registry().get(registry_name));
}

caf::expected<std::uint16_t> secure_publish(caf::actor_system& sys,
                                            const caf::actor& whom,
                                            std::uint16_t port,
                                            const std::string& host) {
  auto mm = secure_middleman(sys);
  if (!mm)
    return caf::make_error(caf::sec::runtime_error,
                           std::string("the secure network is not started"));
  caf::scoped_actor self{sys};
  caf::expected<std::uint16_t> result{caf::make_error(caf::sec::runtime_error)};
  self->request(mm, caf::infinite, caf::publish_atom::value, port,
                caf::actor_cast<caf::strong_actor_ptr>(whom),
                std::set<std::string>{}, host, false)
      .receive([&](std::uint16_t p) { result = p; },
               [&](caf::error& e) {
                 result = caf::make_error(caf::sec::cannot_open_port,
                                          describe(sys, e));
               });
  return result;
}

void secure_unpublish(caf::actor_system& sys, const caf::actor& whom,
                      std::uint16_t port) {
  if (auto mm = secure_middleman(sys))
    caf::anon_send(mm, caf::unpublish_atom::value, whom.address(), port);
}

caf::expected<caf::actor> secure_remote_actor(caf::actor_system& sys,
                                              const std::string& host,
                                              std::uint16_t port) {
  auto mm = secure_middleman(sys);
  if (!mm)
    return caf::make_error(caf::sec::runtime_error,
                           std::string("the secure network is not started"));
  caf::scoped_actor self{sys};
  caf::expected<caf::actor> result{caf::make_error(caf::sec::runtime_error)};
  self->request(mm, caf::infinite, caf::connect_atom::value, host, port)
      .receive(
          [&](const caf::node_id&, caf::strong_actor_ptr& ptr,
              const std::set<std::string>&) {
            if (ptr)
              result = caf::actor_cast<caf::actor>(std::move(ptr));
            else
              result = caf::make_error(
                  caf::sec::no_actor_published_at_port,
                  fmt::format("{}:{}: no actor is published there", host,
                              port));
          },
          [&](caf::error& e) {
            result = caf::make_error(caf::sec::cannot_connect_to_node,
                                     describe(sys, e));
          });
  return result;
}

} // namespace troupe::runtime

#include "runtime/bulk.hpp"

#include "runtime/node.hpp"
#include "runtime/tls.hpp"
#include "runtime/wire.hpp"
#include "schema/troupe.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

std::shared_ptr<bulk_plane> the_plane; // atomic_load / atomic_store only

// This machine's boot id: equal for processes that share a kernel.
std::string read_boot_id() {
  std::string id;
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof(buf), f) != nullptr)
      id = buf;
    std::fclose(f);
  }
  while (!id.empty() && (id.back() == '\n' || id.back() == ' '))
    id.pop_back();
  return id;
}

// An abstract-namespace Unix socket address (no file to clean up).
socklen_t unix_address(const std::string& name, sockaddr_un& addr) {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  const auto n = std::min(name.size(), sizeof(addr.sun_path) - 2);
  std::memcpy(addr.sun_path + 1, name.data(), n); // sun_path[0] = 0
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

// "key=value" from a ';'-separated address; "" if absent.
std::string address_field(const std::string& address, const std::string& key) {
  const auto at = address.find(";" + key + "=");
  if (at == std::string::npos)
    return {};
  const auto begin = at + key.size() + 2;
  return address.substr(begin, address.find(';', begin) - begin);
}

void tune(int fd, double send_timeout_s) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(send_timeout_s);
  tv.tv_usec = static_cast<suseconds_t>(
      (send_timeout_s - static_cast<double>(tv.tv_sec)) * 1e6);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Moves past the first n bytes of the `count` iovecs at `iov`.
void skip_bytes(iovec*& iov, int& count, std::size_t n) {
  while (count > 0 && n >= iov->iov_len) {
    n -= iov->iov_len;
    ++iov;
    --count;
  }
  if (count > 0) {
    iov->iov_base = static_cast<char*>(iov->iov_base) + n;
    iov->iov_len -= n;
  }
}

// How long a caller may write a frame itself before the connection's
// thread takes over.
constexpr auto caller_write_budget = std::chrono::microseconds(1000);

// Writes head + payload on a plain socket without blocking, waiting for
// room only while caller_write_budget lasts: the bytes written (all, or
// fewer when the budget ran out or the socket failed).
std::size_t write_briefly(int fd, const std::vector<std::uint8_t>& head,
                          const devices::tensor& payload) {
  const auto deadline = std::chrono::steady_clock::now() + caller_write_budget;
  iovec iov[2] = {{const_cast<std::uint8_t*>(head.data()), head.size()},
                  {const_cast<float*>(payload.data()), payload.bytes()}};
  iovec* first = iov;
  int count = payload.bytes() > 0 ? 2 : 1;
  std::size_t done = 0;
  while (count > 0) {
    msghdr m{};
    m.msg_iov = first;
    m.msg_iovlen = static_cast<std::size_t>(count);
    const auto put = ::sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (put < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return done;
      const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return done;
      // poll() waits in milliseconds: at most one, the budget.
      pollfd pf{fd, POLLOUT, 0};
      if (::poll(&pf, 1, 1) <= 0 || std::chrono::steady_clock::now() > deadline)
        return done;
      continue;
    }
    done += static_cast<std::size_t>(put);
    skip_bytes(first, count, static_cast<std::size_t>(put));
  }
  return done;
}

int millis_until(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

} // namespace

// A connection of the plane: its socket, and TLS over it (non-blocking
// then) or not (blocking).
struct bulk_plane::link {
  int fd = -1;
  tls_stream* tls = nullptr;
};

// Reads exactly n bytes; false on end of stream, error, or (with a
// timeout) when they do not all come within timeout_ms.
bool bulk_plane::read_exact(const link& l, void* buf, std::size_t n,
                            int timeout_ms) {
  auto* p = static_cast<char*>(buf);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const auto wait = [&](short events) {
    pollfd pf{l.fd, events, 0};
    if (::poll(&pf, 1, timeout_ms >= 0 ? millis_until(deadline) : -1) == 0) {
      errno = ETIMEDOUT;
      return false;
    }
    return true;
  };
  while (n > 0) {
    if (l.tls != nullptr) {
      // TLS first: it may hold bytes the socket no longer shows.
      std::size_t got = 0;
      const auto r = l.tls->read(p, n, got);
      p += got;
      n -= got;
      if (r == tls_io::closed)
        return false;
      if (r == tls_io::failed) {
        std::fprintf(stderr, "%s: %s; closing the connection\n", who_.c_str(),
                     l.tls->error().c_str());
        return false;
      }
      if (r != tls_io::ok && !wait(r == tls_io::want_write ? POLLOUT : POLLIN))
        return false;
      continue;
    }
    if (timeout_ms >= 0 && !wait(POLLIN))
      return false;
    const auto got = ::recv(l.fd, p, n, 0);
    if (got > 0) {
      p += got;
      n -= static_cast<std::size_t>(got);
    } else if (got == 0 || errno != EINTR) {
      return false;
    }
  }
  return true;
}

// Writes every byte of the iovecs; false on error, or when the peer takes
// nothing for send_timeout_s.
bool bulk_plane::write_all(const link& l, iovec* iov, int count) {
  const int wait_ms = static_cast<int>(send_timeout_s_ * 1000);
  while (count > 0) {
    std::size_t moved = 0;
    if (l.tls != nullptr) {
      const auto r = l.tls->write(iov->iov_base, iov->iov_len, moved);
      if (r == tls_io::closed || r == tls_io::failed)
        return false;
      if (r != tls_io::ok) {
        pollfd pf{l.fd,
                  static_cast<short>(r == tls_io::want_read ? POLLIN : POLLOUT),
                  0};
        if (::poll(&pf, 1, wait_ms) <= 0)
          return false;
        continue;
      }
    } else {
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = static_cast<std::size_t>(count);
      const auto put = ::sendmsg(l.fd, &m, MSG_NOSIGNAL);
      if (put < 0) {
        if (errno == EINTR)
          continue;
        return false;
      }
      moved = static_cast<std::size_t>(put);
    }
    skip_bytes(iov, count, moved);
  }
  // What TLS gathered goes out now.
  while (l.tls != nullptr) {
    const auto r = l.tls->flush();
    if (r == tls_io::ok)
      break;
    pollfd pf{l.fd, POLLOUT, 0};
    if (r == tls_io::failed || ::poll(&pf, 1, wait_ms) <= 0)
      return false;
  }
  return true;
}

std::vector<std::uint8_t> encode_bulk_header(const bulk_header& h,
                                             const devices::tensor& payload) {
  return encode_bulk_header(h, payload.shape());
}

std::vector<std::uint8_t> encode_bulk_header(const bulk_header& h,
                                             const devices::shape_t& dims) {
  capnp::MallocMessageBuilder msg;
  auto root = msg.initRoot<schema::BulkFrame>();
  root.setDest(h.dest);
  root.setKind(h.kind);
  auto tags = root.initTags(static_cast<unsigned>(h.tags.size()));
  for (std::size_t i = 0; i < h.tags.size(); ++i)
    tags.set(static_cast<unsigned>(i), h.tags[i]);
  auto shape = root.initShape(static_cast<unsigned>(dims.size()));
  for (std::size_t i = 0; i < dims.size(); ++i)
    shape.set(static_cast<unsigned>(i), static_cast<std::uint64_t>(dims[i]));
  root.setElements(static_cast<std::uint64_t>(devices::numel_of(dims)));
  auto words = capnp::messageToFlatArray(msg);
  auto bytes = words.asBytes();
  const auto n = static_cast<std::uint32_t>(bytes.size());
  std::vector<std::uint8_t> out(sizeof(n) + bytes.size());
  std::memcpy(out.data(), &n, sizeof(n));
  std::memcpy(out.data() + sizeof(n), bytes.begin(), bytes.size());
  return out;
}

std::pair<bulk_header, devices::shape_t>
decode_bulk_header(const std::uint8_t* data, std::size_t bytes) {
  if (bytes % sizeof(capnp::word) != 0 || bytes == 0 ||
      bytes > max_bulk_header_bytes)
    throw wire_error(
        fmt::format("bulk frame header of {} bytes is malformed", bytes));
  kj::Array<capnp::word> words =
      kj::heapArray<capnp::word>(bytes / sizeof(capnp::word));
  std::memcpy(words.begin(), data, bytes);
  try {
    capnp::FlatArrayMessageReader reader(words);
    auto root = reader.getRoot<schema::BulkFrame>();
    bulk_header h;
    h.dest = root.getDest();
    h.kind = root.getKind();
    for (auto t : root.getTags())
      h.tags.push_back(t);
    devices::shape_t shape;
    std::uint64_t n = 1;
    for (auto d : root.getShape()) {
      if (d > max_bulk_elements)
        throw wire_error(fmt::format("bulk frame: dimension {} too large", d));
      n *= d;
      if (n > max_bulk_elements)
        throw wire_error(fmt::format(
            "bulk frame: payload of more than {} elements", max_bulk_elements));
      shape.push_back(static_cast<std::int64_t>(d));
    }
    if (n != root.getElements())
      throw wire_error(fmt::format(
          "bulk frame: shape {} holds {} elements but the header says {}",
          devices::to_string(shape), n, root.getElements()));
    return {std::move(h), std::move(shape)};
  } catch (const kj::Exception& e) {
    throw wire_error(fmt::format("bulk frame: {}", e.getDescription().cStr()));
  }
}

bulk_plane::bulk_plane(const std::string& host, handler on_frame,
                       double send_timeout_s, bool same_host_sockets,
                       const cluster_secret& secret, std::string who,
                       std::shared_ptr<const tls_context> tls)
  : on_frame_(std::move(on_frame))
  , send_timeout_s_(send_timeout_s)
  , secret_(secret)
  , who_(std::move(who))
  , tls_(std::move(tls)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (listen_fd_ < 0 || inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      ::listen(listen_fd_, 128) != 0) {
    const auto why = std::strerror(errno);
    if (listen_fd_ >= 0)
      ::close(listen_fd_);
    throw std::runtime_error(
        fmt::format("data plane: cannot listen on {}: {}", host, why));
  }
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  address_ = fmt::format("{}:{}", host, ntohs(addr.sin_port));
  boot_id_ = read_boot_id();
  if (same_host_sockets && !boot_id_.empty()) {
    const auto name =
        fmt::format("troupe-bulk-{}-{}", getpid(), ntohs(addr.sin_port));
    sockaddr_un ua;
    const auto ulen = unix_address(name, ua);
    unix_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (unix_fd_ >= 0 &&
        ::bind(unix_fd_, reinterpret_cast<sockaddr*>(&ua), ulen) == 0 &&
        ::listen(unix_fd_, 128) == 0) {
      address_ += fmt::format(";unix={};boot={}", name, boot_id_);
    } else if (unix_fd_ >= 0) {
      ::close(unix_fd_); // TCP alone still works
      unix_fd_ = -1;
    }
  }
  // Every connection proves the secret at the gate before a reader
  // thread is spent on it.
  std::vector<int> listeners{listen_fd_};
  if (unix_fd_ >= 0)
    listeners.push_back(unix_fd_);
  gate_ = std::make_unique<auth_gate>(
      std::move(listeners), secret_, auth_channel::bulk,
      [this](int fd, std::unique_ptr<tls_stream> tls, const std::string& peer) {
        admit(fd, std::move(tls), peer);
      },
      who_, gate_limits{}, tls_);
}

bulk_plane::~bulk_plane() {
  std::vector<std::shared_ptr<outbound>> out;
  {
    std::lock_guard<std::mutex> guard(lock_);
    stopping_ = true; // no more sends
    for (auto& [key, o] : out_)
      out.push_back(o);
    out.insert(out.end(), retired_.begin(), retired_.end());
    out_.clear();
    retired_.clear();
  }
  for (auto& o : out)
    close_outbound(*o);
  for (auto& o : out)
    o->thread.join(); // each closed its connection
  gate_.reset();      // no more admissions; closes the listeners
  std::map<std::thread::id, std::thread> readers;
  {
    std::lock_guard<std::mutex> guard(lock_);
    for (int fd : inbound_fds_)
      ::shutdown(fd, SHUT_RDWR);
    readers.swap(readers_);
  }
  for (auto& [id, t] : readers)
    t.join(); // each closed its connection
}

void bulk_plane::reap_finished() {
  for (auto id : finished_) {
    auto it = readers_.find(id);
    if (it != readers_.end()) {
      it->second.join(); // it has returned, or is about to
      readers_.erase(it);
    }
  }
  finished_.clear();
}

void bulk_plane::admit(int fd, std::unique_ptr<tls_stream> tls,
                       const std::string& peer) {
  std::lock_guard<std::mutex> guard(lock_);
  reap_finished();
  if (stopping_ || inbound_fds_.size() >= max_inbound) {
    if (!stopping_ && turned_away_++ % 1000 == 0)
      std::fprintf(stderr,
                   "%s: %zu inbound connections already; closing one from "
                   "%s\n",
                   who_.c_str(), inbound_fds_.size(), peer.c_str());
    ::close(fd);
    return;
  }
  tune(fd, send_timeout_s_);
  if (tls) // every wait is a poll with its own deadline
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
  inbound_fds_.push_back(fd);
  std::shared_ptr<tls_stream> stream = std::move(tls);
  std::thread t([this, fd, stream] {
    read_loop(link{fd, stream.get()});
    // The peer went or sent garbage: close here, not at our own end.
    std::lock_guard<std::mutex> guard(lock_);
    inbound_fds_.erase(std::find(inbound_fds_.begin(), inbound_fds_.end(), fd));
    ::close(fd);
    if (!stopping_)
      finished_.push_back(std::this_thread::get_id());
  });
  const auto id = t.get_id();
  readers_.emplace(id, std::move(t));
}

void bulk_plane::read_loop(const link& l) {
  const int fd = l.fd;
  std::vector<std::uint8_t> head;
  // Once a frame has begun, the rest of it must follow within this.
  const int frame_ms = static_cast<int>(std::max(1.0, send_timeout_s_) * 1000);
  // The job the connection is for comes right after the handshake.
  std::uint64_t job = 0;
  if (!read_exact(l, &job, sizeof(job), frame_ms))
    return;
  for (;;) {
    std::uint32_t n = 0;
    if (!read_exact(l, &n, 1))
      return; // idle between frames: no deadline
    if (!read_exact(l, reinterpret_cast<char*>(&n) + 1, sizeof(n) - 1,
                    frame_ms))
      return;
    if (n > max_bulk_header_bytes) {
      std::fprintf(stderr, "%s: frame header of %u bytes; closing\n",
                   who_.c_str(), n);
      ::shutdown(fd, SHUT_RDWR);
      return;
    }
    head.resize(n);
    if (!read_exact(l, head.data(), n, frame_ms))
      return;
    try {
      auto [h, shape] = decode_bulk_header(head.data(), head.size());
      auto t = devices::tensor::empty(std::move(shape));
      if (!read_exact(l, t.data(), t.bytes(), frame_ms)) {
        std::fprintf(stderr,
                     "%s: a frame's payload did not arrive within %d ms; "
                     "closing the connection\n",
                     who_.c_str(), frame_ms);
        return;
      }
      ++received_;
      on_frame_(job, std::move(h), std::move(t));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s; closing the connection\n", who_.c_str(),
                   e.what());
      ::shutdown(fd, SHUT_RDWR);
      return;
    }
  }
}

void bulk_plane::set_peer(const std::string& key, const std::string& address) {
  std::lock_guard<std::mutex> guard(lock_);
  peers_[key] = address;
}

bool bulk_plane::knows(const std::string& key) const {
  std::lock_guard<std::mutex> guard(lock_);
  return peers_.count(key) > 0;
}

bool bulk_plane::handshake(int fd, const std::string& address,
                           std::uint64_t job,
                           std::unique_ptr<tls_stream>& tls) {
  try {
    tls = client_handshake(
        fd, secret_, auth_channel::bulk, address.substr(0, address.find(';')),
        std::chrono::steady_clock::now() +
            std::chrono::milliseconds(
                static_cast<std::int64_t>(send_timeout_s_ * 1000)),
        tls_);
    if (tls) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
      tls->gather_writes(256 * 1024);
    }
  } catch (const auth_error& e) {
    std::fprintf(stderr, "%s: %s\n", who_.c_str(), e.what());
    return false;
  }
  iovec iov{&job, sizeof(job)};
  return write_all(link{fd, tls.get()}, &iov, 1);
}

int bulk_plane::connect_socket(const std::string& address) {
  // A peer on this machine: its Unix socket, if it is in our namespace.
  const auto unix_name = address_field(address, "unix");
  if (!unix_name.empty() && !boot_id_.empty() &&
      address_field(address, "boot") == boot_id_) {
    sockaddr_un ua;
    const auto ulen = unix_address(unix_name, ua);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&ua), ulen) == 0) {
      tune(fd, send_timeout_s_);
      return fd;
    }
    if (fd >= 0)
      ::close(fd);
  }
  const auto [host, port] = parse_address(address.substr(0, address.find(';')));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return -1;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  tune(fd, send_timeout_s_);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool bulk_plane::send(const std::string& key, std::uint64_t job,
                      const bulk_header& h, const devices::tensor& payload,
                      undelivered on_undelivered) {
  std::shared_ptr<outbound> o;
  {
    std::lock_guard<std::mutex> guard(lock_);
    auto p = peers_.find(key);
    if (stopping_ || p == peers_.end())
      return false;
    auto& slot = out_[{key, job}];
    if (!slot) {
      slot = std::make_shared<outbound>();
      slot->address = p->second;
      slot->job = job;
      slot->thread = std::thread([this, raw = slot.get()] { send_loop(*raw); });
    }
    o = slot;
  }
  frame f;
  f.head = encode_bulk_header(h, payload);
  const auto bytes = f.head.size() + payload.bytes();
  std::unique_lock<std::mutex> lk(o->lock);
  if (o->closing)
    return false;
  // A peer that stopped reading (frozen, or cut off) held the last write
  // until the timeout: the caller's fallback takes over for a while rather
  // than every frame waiting again.
  const auto since = std::chrono::steady_clock::now() - o->failed_at;
  if (o->fd < 0 && o->failed_at != std::chrono::steady_clock::time_point{} &&
      since < std::chrono::duration<double>(4 * send_timeout_s_))
    return false;
  if (!o->queue.empty() && o->queued_bytes + bytes > max_queued_bytes)
    return false;
  f.header = h;
  f.payload = payload;
  f.on_undelivered = std::move(on_undelivered);
  o->queued_bytes += bytes;
  if (o->plain && !o->busy && o->queue.empty()) {
    // The connection is idle: the frame is written here while the peer
    // keeps taking it, for at most caller_write_budget (a hand-off costs
    // more than that on a busy machine); the thread writes the rest. A
    // peer that stalls costs a caller that budget once: later frames
    // queue behind the thread.
    o->busy = true;
    const int fd = o->fd;
    lk.unlock();
    const auto put = write_briefly(fd, f.head, payload);
    lk.lock();
    o->busy = false;
    if (put == bytes) {
      o->queued_bytes -= bytes;
      ++sent_;
      o->wake.notify_all();
      return true;
    }
    // Partly written, or not at all (a full socket, or an error the
    // thread meets again): first in line, from where it stopped.
    f.done = put;
    o->queue.push_front(std::move(f));
    o->wake.notify_all();
    return true;
  }
  o->queue.push_back(std::move(f));
  o->wake.notify_all();
  return true;
}

// The connection's thread: opens it on first use (and after a failure),
// writes the queued frames in order, and gives back what it could not
// write. Only it touches o.tls; it closes o.fd under o.lock, so that
// forget_peer can shut it down safely.
void bulk_plane::send_loop(outbound& o) {
  const auto give_back = [](frame& f) {
    if (f.on_undelivered)
      f.on_undelivered(std::move(f.header), std::move(f.payload));
  };
  std::unique_lock<std::mutex> lk(o.lock);
  while (true) {
    o.wake.wait(lk, [&] { return o.closing || (!o.queue.empty() && !o.busy); });
    if (o.closing)
      break;
    frame f = std::move(o.queue.front());
    o.queue.pop_front();
    o.busy = true;
    lk.unlock();
    int fd = o.fd;
    bool ready = fd >= 0;
    if (!ready) {
      // The socket is filed before the handshake, so that forget_peer can
      // cut short a handshake with a peer that does not answer.
      fd = connect_socket(o.address);
      lk.lock();
      o.fd = fd;
      const bool closing = o.closing;
      lk.unlock();
      ready = fd >= 0 && !closing && handshake(fd, o.address, o.job, o.tls);
    }
    bool written = false;
    if (ready) {
      // From where a caller's write stopped.
      iovec iov[2] = {
          {f.head.data(), f.head.size()},
          {const_cast<float*>(f.payload.data()), f.payload.bytes()}};
      int count = f.payload.bytes() > 0 ? 2 : 1;
      iovec* first = iov;
      skip_bytes(first, count, f.done);
      written = count == 0 || write_all(link{fd, o.tls.get()}, first, count);
    }
    lk.lock();
    o.plain = written && !o.tls;
    o.queued_bytes -= f.head.size() + f.payload.bytes();
    o.busy = false;
    if (written) {
      ++sent_;
      f = frame{};         // the payload is no longer held
      o.wake.notify_all(); // drain()
      continue;
    }
    o.failed_at = std::chrono::steady_clock::now();
    o.plain = false;
    if (o.fd >= 0) {
      o.tls.reset();
      ::close(o.fd);
      o.fd = -1;
    }
    if (o.closing)
      break;
    // This frame (the peer drops a partial one) and every one queued
    // after it go back, in order.
    std::deque<frame> rest;
    rest.swap(o.queue);
    o.queued_bytes = 0;
    lk.unlock();
    give_back(f);
    for (auto& g : rest)
      give_back(g);
    lk.lock();
    o.wake.notify_all();
  }
  // Forgotten, or the plane stops: what is left is dropped, once no
  // caller writes on the socket.
  o.plain = false;
  o.wake.wait(lk, [&] { return !o.busy; });
  o.queue.clear();
  o.queued_bytes = 0;
  if (o.fd >= 0) {
    o.tls.reset();
    ::close(o.fd);
    o.fd = -1;
  }
  o.wake.notify_all();
}

void bulk_plane::close_outbound(outbound& o) {
  std::lock_guard<std::mutex> guard(o.lock);
  o.closing = true;
  // Wakes the thread out of a write to a peer that stopped reading.
  if (o.fd >= 0)
    ::shutdown(o.fd, SHUT_RDWR);
  o.wake.notify_all();
}

bool bulk_plane::drain(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<std::shared_ptr<outbound>> all;
  {
    std::lock_guard<std::mutex> guard(lock_);
    for (auto& [key, o] : out_)
      all.push_back(o);
  }
  for (auto& o : all) {
    std::unique_lock<std::mutex> lk(o->lock);
    if (!o->wake.wait_until(lk, deadline, [&] {
          return o->closing || (o->queue.empty() && !o->busy);
        }))
      return false;
  }
  return true;
}

void bulk_plane::forget_peer(const std::string& key) {
  std::vector<std::shared_ptr<outbound>> gone;
  {
    std::lock_guard<std::mutex> guard(lock_);
    peers_.erase(key);
    for (auto it = out_.lower_bound({key, 0});
         it != out_.end() && it->first.first == key;) {
      gone.push_back(it->second);
      retired_.push_back(it->second);
      it = out_.erase(it);
    }
  }
  // Their threads end soon (joined when the plane goes); nothing waits.
  for (auto& o : gone)
    close_outbound(*o);
}

std::shared_ptr<bulk_plane> process_bulk_plane() {
  return std::atomic_load(&the_plane);
}

void set_process_bulk_plane(std::shared_ptr<bulk_plane> plane) {
  std::atomic_store(&the_plane, std::move(plane));
}

} // namespace troupe::runtime

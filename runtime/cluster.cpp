#include "runtime/cluster.hpp"

#include "runtime/secure_net.hpp"

#include <caf/io/all.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

// Children for the signal handler: a fixed table of atomics.
constexpr int max_children = 256;
std::atomic<pid_t> children[max_children];

void remember(pid_t pid) {
  for (auto& c : children) {
    pid_t expected = 0;
    if (c.compare_exchange_strong(expected, pid))
      return;
  }
}

void forget(pid_t pid) {
  for (auto& c : children) {
    pid_t expected = pid;
    if (c.compare_exchange_strong(expected, 0))
      return;
  }
}

pid_t start_node(const std::string& exe, int index, const network_options& net,
                 const cluster_secret& secret, const std::string& tls_dir,
                 int* out_fd) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    throw cluster_error(
        fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  // The command line, made before fork: the child only execs.
  std::vector<std::string> args{exe,
                                "node",
                                "--listen",
                                "127.0.0.1:0",
                                "--name",
                                fmt::format("node{}", index),
                                "--heartbeat",
                                fmt::format("{}", net.heartbeat_s),
                                "--heartbeat-timeout",
                                fmt::format("{}", net.heartbeat_timeout_s),
                                "--threads",
                                fmt::format("{}", net.threads),
                                "--quiet"};
  if (!tls_dir.empty()) {
    args.emplace_back("--tls-dir");
    args.push_back(tls_dir);
  }
  for (const auto& p : net.plugins) {
    args.emplace_back("--plugin");
    args.push_back(p);
  }
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto secret_hex = secret.set ? secret_to_hex(secret) : std::string();
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0)
    throw cluster_error(fmt::format("cannot fork: {}", std::strerror(errno)));
  if (pid == 0) {
    // Child: die with the parent, stdout to the pipe, then exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
    dup2(fds[1], STDOUT_FILENO);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // The job's secret reaches the child in its environment, which only
    // this user can read (/proc/PID/environ is 0400), never in argv.
    unsetenv("TROUPE_SECRET_FILE");
    if (secret.set)
      setenv("TROUPE_SECRET", secret_hex.c_str(), 1);
    else
      unsetenv("TROUPE_SECRET");
    unsetenv("TROUPE_TLS_DIR");
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  *out_fd = fds[0];
  remember(pid);
  return pid;
}

// Reads one line from fd within the deadline.
std::string read_line(int fd, std::chrono::steady_clock::time_point deadline) {
  std::string line;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0)
      return {};
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0)
      continue;
    char c = 0;
    const auto n = read(fd, &c, 1);
    if (n <= 0)
      return {};
    if (c == '\n')
      return line;
    line += c;
  }
}

} // namespace

void kill_local_nodes_from_signal_handler() {
  // Only async-signal-safe calls. SIGKILL: a node holds nothing to flush
  // (the driver writes the snapshots). Then each is waited for, so that
  // none outlives this process, whatever the parent-death signal does.
  const int saved = errno;
  for (auto& c : children) {
    const pid_t pid = c.load();
    if (pid > 0)
      kill(pid, SIGKILL);
  }
  for (auto& c : children) {
    const pid_t pid = c.exchange(0);
    if (pid > 0)
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
  }
  errno = saved;
}

local_nodes::local_nodes(const std::string& exe, int n,
                         const network_options& net,
                         const cluster_secret& secret,
                         std::chrono::milliseconds timeout,
                         const std::string& tls_dir) {
  std::vector<int> fds;
  try {
    for (int i = 0; i < n; ++i) {
      int fd = -1;
      pids_.push_back(start_node(exe, i, net, secret, tls_dir, &fd));
      fds.push_back(fd);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int i = 0; i < n; ++i) {
      auto line = read_line(fds[static_cast<std::size_t>(i)], deadline);
      if (line.empty())
        throw cluster_error(fmt::format(
            "local node {} (pid {}) did not report an address within {} ms", i,
            pids_[static_cast<std::size_t>(i)], timeout.count()));
      addresses_.push_back(line);
    }
  } catch (...) {
    for (int fd : fds)
      close(fd);
    stop();
    throw;
  }
  for (int fd : fds)
    close(fd);
}

local_nodes::~local_nodes() {
  stop();
}

void local_nodes::stop() {
  for (auto pid : pids_) {
    kill(pid, SIGTERM);
    kill(pid, SIGCONT); // a frozen node ([[chaos]] freeze) stops too
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (auto pid : pids_) {
    for (;;) {
      int status = 0;
      const auto r = waitpid(pid, &status, WNOHANG);
      if (r == pid || (r < 0 && errno != EINTR))
        break;
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    forget(pid);
  }
  pids_.clear();
}

caf::actor connect_actor(caf::actor_system& sys, const std::string& addr,
                         std::chrono::milliseconds timeout) {
  std::pair<std::string, std::uint16_t> hp;
  try {
    hp = parse_address(addr);
  } catch (const std::invalid_argument& e) {
    throw cluster_error(e.what());
  }
  // remote_actor blocks; a peer that accepts but never answers must not
  // hang us, so it runs on its own thread and we wait a bounded time.
  auto promise = std::make_shared<std::promise<caf::expected<caf::actor>>>();
  auto future = promise->get_future();
  std::thread([&sys, hp, promise] {
    promise->set_value(secure_remote_actor(sys, hp.first, hp.second));
  }).detach();
  if (future.wait_for(timeout) != std::future_status::ready)
    throw cluster_error(fmt::format("{} is unreachable: no answer within {} ms",
                                    addr, timeout.count()));
  auto h = future.get();
  if (!h)
    throw cluster_error(describe(sys, h.error()));
  return *h;
}

std::vector<node_handle>
connect_nodes(caf::actor_system& sys, const std::vector<std::string>& addresses,
              std::chrono::milliseconds timeout) {
  std::vector<node_handle> out;
  for (const auto& addr : addresses) {
    caf::actor mgr;
    try {
      mgr = connect_actor(sys, addr, timeout);
    } catch (const cluster_error& e) {
      throw cluster_error(fmt::format("node {}", e.what()));
    }
    node_handle h;
    h.address = addr;
    h.manager = mgr;
    caf::scoped_actor self{sys};
    std::string failure;
    self->request(h.manager, timeout, node_info_atom::value)
        .receive([&](node_info& info) { h.info = std::move(info); },
                 [&](caf::error& err) { failure = sys.render(err); });
    if (!failure.empty())
      throw cluster_error(
          fmt::format("node {} did not answer: {}", addr, failure));
    out.push_back(std::move(h));
  }
  return out;
}

} // namespace troupe::runtime

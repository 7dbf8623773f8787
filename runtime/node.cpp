#include "runtime/node_log.hpp"
#include "runtime/node_protocol.hpp"

#include "runtime/bulk_caf.hpp"
#include "runtime/secure_net.hpp"
#include "runtime/tls.hpp"

#include <caf/io/all.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <malloc.h>
#include <map>
#include <net/if.h>
#include <netinet/in.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <future>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

int stop_pipe[2] = {-1, -1};

extern "C" void node_stop_signal(int sig) {
  const auto saved = errno;
  [[maybe_unused]] auto n = write(stop_pipe[1], &sig, sizeof(sig));
  errno = saved;
}

// What a node runs for one job.
struct job_actors {
  caf::actor_addr owner; ///< the driver's anchor; gone = the driver is gone
  std::vector<caf::actor> children;
};

struct manager_state {
  node_info info;
  std::vector<std::string> roles;
  std::function<std::string(const std::string&, const caf::message&)> check;
  std::map<std::string, job_actors> jobs;
  std::map<caf::actor_addr, std::string> job_of;  ///< child or owner -> job
  std::map<caf::actor_addr, std::string> name_of; ///< child -> "worker:1"
};

// "worker:1" for a role spawned with (spec, index, ...); the role alone
// otherwise (the evaluator).
std::string actor_name(const std::string& role, const caf::message& args) {
  if (args.size() >= 2 && args.match_element<std::int32_t>(1))
    return fmt::format("{}:{}", role, args.get_as<std::int32_t>(1));
  return role;
}

// Stops a job's actors (they exit asynchronously) and forgets the job; the
// memory they held goes back to the system a moment later.
void stop_job(caf::stateful_actor<manager_state>* self, const std::string& job,
              const char* why) {
  auto& st = self->state;
  auto it = st.jobs.find(job);
  if (it == st.jobs.end())
    return;
  if (!it->second.children.empty())
    std::fprintf(
        stderr, "troupe node %s: job %s: %s; stopping its %zu actor(s)\n",
        st.info.name.c_str(), job.c_str(), why, it->second.children.size());
  node_log(
      "job_stopped", job, {},
      fmt::format("{}; {} actor(s) stopped", why, it->second.children.size()));
  for (auto& c : it->second.children) {
    st.job_of.erase(c.address());
    st.name_of.erase(c.address());
    unbind_from_job(c.id());
    self->send_exit(c, caf::exit_reason::user_shutdown);
  }
  st.job_of.erase(it->second.owner);
  st.jobs.erase(it);
  self->delayed_send(self, std::chrono::seconds(1), trim_atom::value);
}

caf::behavior node_manager(caf::stateful_actor<manager_state>* self,
                           node_info info, std::vector<std::string> roles,
                           spawn_check check) {
  self->state.info = std::move(info);
  self->state.roles = std::move(roles);
  self->state.check = std::move(check);
  // Children and owners are monitored: a child that ends leaves its job's
  // list; an owner that ends (the driver exited, was killed or cut off)
  // takes its job's actors with it.
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto it = st.job_of.find(dm.source);
    if (it == st.job_of.end())
      return;
    const auto job = it->second;
    auto& entry = st.jobs[job];
    if (dm.source == entry.owner) {
      stop_job(self, job, "its driver is gone");
      return;
    }
    st.job_of.erase(it);
    auto name = st.name_of.find(dm.source);
    if (name != st.name_of.end()) {
      node_log("actor_exit", job, name->second,
               dm.reason ? self->system().render(dm.reason)
                         : std::string("normal"));
      st.name_of.erase(name);
    }
    unbind_from_job(dm.source.id());
    auto& c = entry.children;
    c.erase(std::remove_if(
                c.begin(), c.end(),
                [&](const caf::actor& a) { return a.address() == dm.source; }),
            c.end());
  });
  return {
      [=](node_info_atom) { return self->state.info; },
      [=](node_info_atom, node_info& final_info) {
        self->state.info = std::move(final_info);
      },
      [=](spawn_atom, const std::string& job, const caf::actor& owner,
          const std::string& role,
          caf::message& args) -> caf::result<caf::actor> {
        auto& st = self->state;
        const auto& allowed = st.roles;
        if (std::find(allowed.begin(), allowed.end(), role) == allowed.end())
          return caf::make_error(
              caf::sec::runtime_error,
              fmt::format("node {} does not run '{}' for peers (it runs: {})",
                          st.info.name, role, fmt::join(allowed, ", ")));
        if (st.check) {
          if (auto why = st.check(role, args); !why.empty()) {
            std::fprintf(stderr, "troupe node %s: refused to spawn %s: %s\n",
                         st.info.name.c_str(), role.c_str(), why.c_str());
            node_log("spawn_refused", job.size() <= 128 ? job : "",
                     actor_name(role, args), why);
            return caf::make_error(
                caf::sec::runtime_error,
                fmt::format("node {} refused {}: {}", st.info.name, role, why));
          }
        }
        if (job.empty() || job.size() > 128 || !owner)
          return caf::make_error(caf::sec::runtime_error,
                                 std::string("a spawn needs a job id and its "
                                             "owner"));
        auto& entry = st.jobs[job];
        if (!entry.owner) {
          node_log("job_started", job, {},
                   fmt::format("driver on {}", to_string(owner.node())));
          entry.owner = owner.address();
          st.job_of[entry.owner] = job;
          self->monitor(owner);
        } else if (entry.owner != owner.address()) {
          return caf::make_error(
              caf::sec::runtime_error,
              fmt::format("job {} belongs to another driver", job));
        }
        const auto name = actor_name(role, args);
        auto h = self->system().spawn<caf::actor>(role, std::move(args));
        if (!h) {
          node_log("spawn_failed", job, name, self->system().render(h.error()));
          return std::move(h.error());
        }
        node_log("spawned", job, name, fmt::format("actor id {}", h->id()));
        self->monitor(*h);
        entry.children.push_back(*h);
        st.job_of[h->address()] = job;
        st.name_of[h->address()] = name;
        bind_to_job(h->id(), job_tag(job));
        return *h;
      },
      [=](trim_atom) { malloc_trim(0); },
      [=](peers_atom, const std::vector<std::string>& keys,
          const std::vector<std::string>& addresses) {
        auto plane = process_bulk_plane();
        if (!plane || keys.size() != addresses.size())
          return false;
        for (std::size_t i = 0; i < keys.size(); ++i)
          if (keys[i] != bulk_key(self->node()))
            plane->set_peer(keys[i], addresses[i]);
        return true;
      },
      [=](mesh_atom, const std::vector<std::string>& addresses,
          std::int64_t timeout_ms) {
        // Direct connections to the job's other nodes, opened before any
        // actor talks across them: CAF 0.17's automatic connections (a
        // route through the driver replaced by a direct one mid-stream)
        // lost messages here, about one job in 30.
        auto rp = self->make_response_promise<std::vector<std::string>>();
        auto failures = std::make_shared<std::vector<std::string>>();
        auto left = std::make_shared<std::size_t>(addresses.size());
        auto done = [=]() mutable {
          if (--*left == 0)
            rp.deliver(*failures);
        };
        if (addresses.empty())
          rp.deliver(*failures);
        auto mm = secure_middleman(self->system());
        for (const auto& a : addresses) {
          std::pair<std::string, std::uint16_t> hp;
          try {
            hp = parse_address(a);
          } catch (const std::invalid_argument& e) {
            failures->push_back(e.what());
            done();
            continue;
          }
          self->request(mm, std::chrono::milliseconds(timeout_ms),
                        caf::connect_atom::value, hp.first, hp.second)
              .then([=](const caf::node_id&, const caf::strong_actor_ptr&,
                        const std::set<std::string>&) mutable { done(); },
                    [=](caf::error& err) mutable {
                      failures->push_back(
                          fmt::format("{}: {}", a, self->system().render(err)));
                      done();
                    });
        }
        return rp;
      },
      [=](forget_atom, const std::string& key) {
        if (auto plane = process_bulk_plane())
          plane->forget_peer(key);
      },
      [=](fault_atom, const std::string& action) {
        // A rehearsed failure of this whole process: killed, as by the
        // OOM killer or a power cut, or frozen, as by a hung kernel or a
        // cut cable (only the heartbeat timeout tells).
        std::fprintf(stderr, "troupe node %s: fault injected: %s\n",
                     self->state.info.name.c_str(), action.c_str());
        std::fflush(stderr);
        node_log("fault", {}, {}, action);
        ::raise(action == "freeze" ? SIGSTOP : SIGKILL);
      },
      [=](reset_atom, const std::string& job) {
        stop_job(self, job, "reset by its driver");
      },
      [=](reset_atom) {
        // This node is shutting down: every job goes.
        std::vector<std::string> jobs;
        for (const auto& [job, entry] : self->state.jobs)
          jobs.push_back(job);
        for (const auto& job : jobs)
          stop_job(self, job, "the node is shutting down");
      },
  };
}

} // namespace

void register_node_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<node_info>("troupe.node_info");
}

caf::actor spawn_node_manager(caf::actor_system& sys, node_info info,
                              std::vector<std::string> roles,
                              spawn_check check) {
  return sys.spawn(node_manager, std::move(info), std::move(roles),
                   std::move(check));
}

void configure_network(caf::actor_system_config& cfg,
                       const network_options& opts) {
  cfg.load<caf::io::middleman>();
  using ms = std::chrono::milliseconds;
  cfg.set(
      "middleman.heartbeat-interval",
      caf::timespan{ms{static_cast<std::int64_t>(opts.heartbeat_s * 1000)}});
  cfg.set("middleman.connection-timeout",
          caf::timespan{
              ms{static_cast<std::int64_t>(opts.heartbeat_timeout_s * 1000)}});
  // Nodes connect to each other explicitly at start-up (mesh_atom).
  cfg.set("middleman.enable-automatic-connections", false);
  const auto threads =
      opts.threads > 0
          ? static_cast<std::size_t>(opts.threads)
          : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  cfg.set("scheduler.max-threads", threads);
  // An idle scheduler thread sleeps on its condition variable (woken by the
  // next message) instead of spinning and napping in 50 us steps: a node's
  // cores belong to its workers and to the data plane's reader threads.
  cfg.set("work-stealing.aggressive-poll-attempts", std::size_t{1});
  cfg.set("work-stealing.moderate-poll-attempts", std::size_t{0});
}

std::int64_t machine_cores() {
  return std::max<std::int64_t>(1, std::thread::hardware_concurrency());
}

std::int64_t machine_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? static_cast<std::int64_t>(pages) * size : 0;
}

std::pair<std::string, std::uint16_t> parse_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw std::invalid_argument(
        fmt::format("'{}' is not an address of the form HOST:PORT", text));
  const auto port_text = text.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (*end != '\0' || port < 0 || port > 65535)
    throw std::invalid_argument(fmt::format(
        "'{}': port '{}' is not a number in 0..65535", text, port_text));
  return {text.substr(0, colon), static_cast<std::uint16_t>(port)};
}

std::string advertised_host(const std::string& host,
                            const std::string& advertise) {
  if (!advertise.empty())
    return advertise;
  if (!host.empty() && host != "0.0.0.0" && host != "::")
    return host;
  std::string found;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) == 0) {
    for (auto* a = list; a != nullptr && found.empty(); a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET ||
          (a->ifa_flags & IFF_UP) == 0 || (a->ifa_flags & IFF_LOOPBACK) != 0)
        continue;
      char text[INET_ADDRSTRLEN] = {};
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr)
        found = text;
    }
    freeifaddrs(list);
  }
  if (found.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0')
      found = name;
  }
  return found.empty() ? std::string("127.0.0.1") : found;
}

int run_node(
    const node_options& opts,
    const std::function<void(caf::actor_system_config&)>& register_types,
    const std::function<void(const node_info&)>& on_listening) {
  // SIGINT/SIGTERM write to a pipe the main thread waits on; a handler
  // works whichever thread the signal lands on (sanitizer runtimes start
  // threads before main, so blocking the signals is not enough).
  if (!opts.secret.set && !opts.tls && !opts.insecure &&
      !is_loopback_host(opts.host)) {
    std::fprintf(stderr,
                 "troupe node: refusing to listen on %s without a cluster "
                 "secret: anyone who reaches it could run jobs and read files "
                 "here. Give --secret-file FILE (make one with `troupe secret "
                 "> FILE`) or --tls-dir DIR (`troupe cert`), or --insecure on "
                 "a network you trust\n",
                 opts.host.c_str());
    return 2;
  }
  if (pipe(stop_pipe) != 0) {
    std::fprintf(stderr, "troupe node: cannot create a pipe\n");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = node_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  caf::actor_system_config cfg;
  configure_network(cfg, opts.network);
  register_node_types(cfg);
  register_types(cfg);
  auto sys = std::make_unique<caf::actor_system>(cfg);
  const auto who =
      fmt::format("troupe node {}", opts.name.empty() ? opts.host : opts.name);
  net_security sec;
  sec.secret = opts.secret;
  sec.tls = opts.tls;
  sec.who = who;
  sec.connect_timeout_s = opts.network.heartbeat_timeout_s;
  auto guarded = std::make_unique<secure_net>(*sys, sec);
  std::shared_ptr<bulk_plane> plane;
  try {
    plane = start_bulk_plane(*sys, opts.host, opts.network.heartbeat_timeout_s,
                             opts.secret, who, opts.tls);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe node: %s\n", e.what());
    return 3;
  }
  // Peers dial this host: the one listened on, unless that is every
  // interface (0.0.0.0), which no peer can dial.
  const auto public_host = advertised_host(opts.host, opts.advertise);
  node_info info;
  info.bulk = plane->address();
  if (public_host != opts.host)
    info.bulk = fmt::format("{}:{}", public_host,
                            info.bulk.substr(info.bulk.rfind(':') + 1));
  info.host = public_host;
  info.heartbeat_s = opts.network.heartbeat_s;
  info.heartbeat_timeout_s = opts.network.heartbeat_timeout_s;
  info.cores = machine_cores();
  info.memory_bytes = machine_memory_bytes();
  info.devices = opts.devices;
  info.pid = static_cast<std::int64_t>(getpid());
  auto mgr = spawn_node_manager(*sys, info, opts.roles, opts.check_spawn);
  auto port = secure_publish(*sys, mgr, opts.port, opts.host);
  if (!port) {
    std::fprintf(stderr, "troupe node: cannot listen on %s:%u: %s\n",
                 opts.host.c_str(), static_cast<unsigned>(opts.port),
                 sys->render(port.error()).c_str());
    caf::anon_send_exit(mgr, caf::exit_reason::kill);
    stop_bulk_plane(plane);
    return 3;
  }
  info.port = *port;
  info.name =
      opts.name.empty() ? fmt::format("{}:{}", public_host, *port) : opts.name;
  caf::anon_send(mgr, node_info_atom::value, info);
  on_listening(info);
  std::fflush(stdout);
  if (!opts.secret.set && !opts.tls)
    std::fprintf(stderr,
                 "troupe node %s: no cluster secret: any process that reaches "
                 "%s:%u may use this node\n",
                 info.name.c_str(), opts.host.c_str(),
                 static_cast<unsigned>(*port));
  if (opts.tls)
    std::fprintf(stderr,
                 "troupe node %s: mutual TLS as %s: peers need a certificate "
                 "of the CA in %s/ca.pem%s\n",
                 info.name.c_str(), opts.tls->name().c_str(),
                 opts.tls->dir().c_str(),
                 opts.secret.set ? " and the cluster secret" : "");
  set_node_log_name(info.name);
  node_log("listening", {}, {},
           fmt::format("{}:{} ({} cores, devices {}, data plane {})", opts.host,
                       *port, info.cores, fmt::join(info.devices, ","),
                       info.bulk));
  std::fprintf(
      stderr, "troupe node %s: listening on %s:%u (%lld cores, devices %s)%s\n",
      info.name.c_str(), opts.host.c_str(), static_cast<unsigned>(*port),
      static_cast<long long>(info.cores),
      fmt::format("{}", fmt::join(info.devices, ",")).c_str(),
      public_host != opts.host
          ? fmt::format("; peers dial {}:{} (--advertise to change)",
                        public_host, *port)
                .c_str()
          : "");
  int sig = 0;
  while (read(stop_pipe[0], &sig, sizeof(sig)) < 0 && errno == EINTR) {
  }
  std::fprintf(stderr, "troupe node %s: %s, shutting down\n", info.name.c_str(),
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  node_log("shutdown", {}, {}, sig == SIGINT ? "SIGINT" : "SIGTERM");
  // Stop what runs here, then the system; bounded, since a peer that holds
  // our actors can keep the system from finishing.
  caf::anon_send(mgr, reset_atom::value);
  caf::anon_send_exit(mgr, caf::exit_reason::user_shutdown);
  secure_unpublish(*sys, mgr, info.port);
  mgr = nullptr;
  stop_bulk_plane(plane);
  guarded.reset();
  // Everything of ours has been told to stop; do not wait for proxies of
  // remote actors (they can keep the registry from emptying).
  sys->await_actors_before_shutdown(false);
  // The actor system must be destroyed on the thread that made it (CAF 0.17
  // hangs otherwise); a watchdog bounds the wait instead.
  std::thread([name = info.name] {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    std::fprintf(stderr, "troupe node %s: shutdown took over 5 s; exiting\n",
                 name.c_str());
    std::fflush(stderr);
    _exit(0);
  }).detach();
  sys.reset();
  return 0;
}

} // namespace troupe::runtime

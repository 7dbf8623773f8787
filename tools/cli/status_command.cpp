// troupe status --coordinator HOST:PORT: what a running job is doing.
// troupe kill --coordinator HOST:PORT ROLE:INDEX | --node NAME: kill one
// of its actors, or a whole node.
#include "tools/cli/commands.hpp"
#include "tools/cli/dashboard_feed.hpp"
#include "tools/cli/secret.hpp"
#include "tools/watch/dashboard.hpp"

#include "actors/messages.hpp"
#include "runtime/auth.hpp"
#include "runtime/cluster.hpp"
#include "runtime/secure_net.hpp"

#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::cli {

namespace {

struct status_cli {
  std::string coordinator;
  std::string secret_file;
  std::string tls_dir;
  bool json = false;
  double timeout = 5;
  std::string dashboard; ///< --dashboard HOST:PORT
};

struct kill_cli {
  std::string coordinator;
  std::string secret_file;
  std::string tls_dir;
  std::string target;
  std::string node;
  double timeout = 5;
};

using body_fn = std::function<int(caf::actor_system&, const caf::actor&,
                                  std::chrono::milliseconds,
                                  const runtime::cluster_secret&)>;

// Connects to a running job's coordinator and runs `body` with it. A bad
// address is exit 2, an unreachable coordinator exit 3.
int with_coordinator(const char* command, const std::string& address,
                     const std::string& secret_file, const std::string& tls_dir,
                     double timeout_s, const body_fn& body) {
  try {
    runtime::parse_address(address);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "troupe %s: --coordinator %s\n", command, e.what());
    return exit_bad_input;
  }
  runtime::net_security sec;
  try {
    sec.secret = cli_secret(secret_file);
    // A job on local nodes made its own secret and left it for its user.
    if (!sec.secret.set) {
      const auto path = runtime::job_secret_path(address);
      if (::access(path.c_str(), F_OK) == 0)
        sec.secret = runtime::load_secret_file(path);
    }
    sec.tls = cli_tls(tls_dir);
  } catch (const runtime::secret_error& e) {
    std::fprintf(stderr, "troupe %s: %s\n", command, e.what());
    return exit_bad_input;
  } catch (const runtime::tls_error& e) {
    std::fprintf(stderr, "troupe %s: %s\n", command, e.what());
    return exit_bad_input;
  }
  sec.connect_timeout_s = timeout_s;
  sec.who = fmt::format("troupe {}", command);
  caf::actor_system_config cfg;
  actors::register_roles(cfg);
  runtime::register_node_types(cfg);
  runtime::configure_network(cfg, {});
  caf::actor_system sys{cfg};
  runtime::secure_net guarded{sys, sec};
  const auto timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
  caf::actor coord;
  try {
    coord = runtime::connect_actor(sys, address, timeout);
  } catch (const runtime::cluster_error& e) {
    std::fprintf(stderr, "troupe %s: coordinator %s\n", command, e.what());
    std::fflush(stderr);
    // A connection attempt may still be blocked inside CAF: do not wait.
    _exit(exit_unreachable);
  }
  return body(sys, coord, timeout, sec.secret);
}

int show(const status_cli& o, caf::actor_system& sys, const caf::actor& coord,
         std::chrono::milliseconds timeout);

int kill_actor(const kill_cli& o) {
  if (o.target.empty() == o.node.empty()) {
    std::fprintf(stderr, "troupe kill: give either ROLE:INDEX or --node "
                         "NAME\n");
    return exit_bad_input;
  }
  // A node is killed by its own manager (SIGKILL to its process).
  const auto target = o.node.empty() ? o.target : "node:" + o.node;
  const auto what = o.node.empty() ? o.target : "node " + o.node;
  return with_coordinator(
      "kill", o.coordinator, o.secret_file, o.tls_dir, o.timeout,
      [&](caf::actor_system& sys, const caf::actor& coord,
          std::chrono::milliseconds timeout, const runtime::cluster_secret&) {
        caf::scoped_actor self{sys};
        std::string refused, failure;
        self->request(coord, timeout, actors::kill_atom::value, target)
            .receive([&](std::string& why) { refused = std::move(why); },
                     [&](caf::error& e) { failure = sys.render(e); });
        if (!failure.empty()) {
          std::fprintf(stderr,
                       "troupe kill: coordinator %s did not answer: %s\n",
                       o.coordinator.c_str(), failure.c_str());
          return exit_unreachable;
        }
        if (!refused.empty()) {
          std::fprintf(stderr, "troupe kill: %s\n", refused.c_str());
          return exit_bad_input;
        }
        std::printf("killed %s\n", what.c_str());
        return exit_ok;
      });
}

// --dashboard: the job's page, fed by its coordinator, until Ctrl-C.
int serve_dashboard(const status_cli& o, caf::actor_system& sys,
                    const caf::actor& coord, std::chrono::milliseconds timeout,
                    const runtime::cluster_secret& secret) {
  std::pair<std::string, std::uint16_t> at;
  try {
    at = runtime::parse_address(o.dashboard);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "troupe status: --dashboard: %s\n", e.what());
    return exit_bad_input;
  }
  // The last answer, shown (as unreachable) once the job is gone.
  auto last = std::make_shared<std::pair<std::mutex, std::string>>();
  auto state = [&sys, coord, timeout, last] {
    caf::scoped_actor self{sys};
    actors::job_status s;
    actors::job_history h;
    bool ok = true;
    self->request(coord, timeout, actors::status_atom::value)
        .receive([&](actors::job_status& x) { s = std::move(x); },
                 [&](caf::error&) { ok = false; });
    if (ok)
      self->request(coord, timeout, actors::history_atom::value)
          .receive([&](actors::job_history& x) { h = std::move(x); },
                   [&](caf::error&) { ok = false; });
    std::lock_guard<std::mutex> guard(last->first);
    if (ok) {
      last->second = watch::to_json(record_of(s, h));
      return last->second;
    }
    auto j = last->second.empty() ? nlohmann::json::object()
                                  : nlohmann::json::parse(last->second);
    j["state"] = "unreachable";
    return j.dump();
  };
  std::unique_ptr<watch::dashboard_server> server;
  try {
    server = std::make_unique<watch::dashboard_server>(
        at.first, at.second,
        watch::dashboard_token(
            secret.set ? std::string(secret.key.begin(), secret.key.end())
                       : ""),
        state);
  } catch (const watch::dashboard_error& e) {
    std::fprintf(stderr, "troupe status: %s\n", e.what());
    return exit_bad_input;
  }
  std::fprintf(stderr,
               "troupe status: dashboard of %s (until Ctrl-C)%s at %s\n",
               o.coordinator.c_str(),
               runtime::is_loopback_host(at.first)
                   ? ""
                   : ", reachable from other machines by its token",
               server->url().c_str());
  std::fflush(stderr);
  // SIGINT/SIGTERM were blocked before any thread started: wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  int sig = 0;
  sigwait(&stop, &sig);
  return exit_ok;
}

int run(const status_cli& o) {
  if (!o.dashboard.empty()) {
    // Blocked here, so that every thread started later has them blocked
    // and serve_dashboard's sigwait takes them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  }
  return with_coordinator(
      "status", o.coordinator, o.secret_file, o.tls_dir, o.timeout,
      [&](caf::actor_system& sys, const caf::actor& coord,
          std::chrono::milliseconds timeout,
          const runtime::cluster_secret& secret) {
        if (!o.dashboard.empty())
          return serve_dashboard(o, sys, coord, timeout, secret);
        return show(o, sys, coord, timeout);
      });
}

int show(const status_cli& o, caf::actor_system& sys, const caf::actor& coord,
         std::chrono::milliseconds timeout) {
  caf::scoped_actor self{sys};
  actors::job_status s;
  std::string failure;
  self->request(coord, timeout, actors::status_atom::value)
      .receive([&](actors::job_status& x) { s = std::move(x); },
               [&](caf::error& e) { failure = sys.render(e); });
  if (!failure.empty()) {
    std::fprintf(stderr, "troupe status: coordinator %s did not answer: %s\n",
                 o.coordinator.c_str(), failure.c_str());
    return exit_unreachable;
  }
  // Actors by node; a worker on a GPU is shown with it ("worker:0@cuda:0").
  std::map<std::string, std::vector<std::string>> by_node;
  for (const auto& [actor, node] : s.placement)
    by_node[node].push_back(actor_label(s, actor));
  auto devices_of = [&](std::size_t i) {
    return i < s.node_devices.size() ? s.node_devices[i]
                                     : std::vector<std::string>{};
  };
  if (o.json) {
    nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < s.nodes.size(); ++i) {
      const auto& n = s.nodes[i];
      nodes.push_back(
          {{"name", n},
           {"lost", std::find(s.lost_nodes.begin(), s.lost_nodes.end(), n) !=
                        s.lost_nodes.end()},
           {"devices", devices_of(i)},
           {"actors", by_node[n]}});
    }
    nlohmann::ordered_json restarts = nlohmann::ordered_json::object();
    for (const auto& [actor, n] : s.restarts)
      restarts[actor] = n;
    nlohmann::ordered_json j{{"job", s.job},
                             {"mode", s.mode},
                             {"state", s.state},
                             {"nodes", nodes},
                             {"restarts", restarts},
                             {"step", s.step},
                             {"steps", s.steps},
                             {"loss", s.loss},
                             {"samples_per_s", s.samples_per_s},
                             {"wall_s", s.wall_s}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("job %s (%s): %s, step %lld/%lld, loss %.4f, %.0f samples/s\n",
                s.job.c_str(), s.mode.c_str(), s.state.c_str(),
                static_cast<long long>(s.step), static_cast<long long>(s.steps),
                s.loss, s.samples_per_s);
    for (std::size_t i = 0; i < s.nodes.size(); ++i) {
      const auto& n = s.nodes[i];
      const bool lost = std::find(s.lost_nodes.begin(), s.lost_nodes.end(),
                                  n) != s.lost_nodes.end();
      std::printf("  %s [%s]%s: %s\n", n.c_str(),
                  fmt::format("{}", fmt::join(devices_of(i), ", ")).c_str(),
                  lost ? " (lost)" : "",
                  fmt::format("{}", fmt::join(by_node[n], ", ")).c_str());
    }
  }
  return exit_ok;
}

} // namespace

void add_status_command(CLI::App& app, int* code) {
  auto o = std::make_shared<status_cli>();
  auto* cmd = app.add_subcommand("status", "Show a running job: nodes, actors, "
                                           "step, loss, samples/s");
  cmd->add_option("--coordinator", o->coordinator,
                  "HOST:PORT of the job's coordinator (troupe run prints it)")
      ->required();
  cmd->add_flag("--json", o->json, "One JSON object on stdout");
  cmd->add_option("--timeout", o->timeout, "Seconds to wait for an answer")
      ->capture_default_str();
  cmd->add_option("--dashboard", o->dashboard,
                  "Serve the job's live dashboard at HOST:PORT until Ctrl-C "
                  "(port 0: the OS picks); its URL is printed on stderr");
  add_secret_option(cmd, &o->secret_file);
  add_tls_option(cmd, &o->tls_dir);
  cmd->callback([o, code] { *code = run(*o); });
}

void add_kill_command(CLI::App& app, int* code) {
  auto o = std::make_shared<kill_cli>();
  auto* cmd = app.add_subcommand(
      "kill", "Kill one actor or a whole node of a running job, as a crash "
              "would (supervision restarts what was lost)");
  cmd->add_option("--coordinator", o->coordinator,
                  "HOST:PORT of the job's coordinator (troupe run prints it)")
      ->required();
  cmd->add_option("target", o->target,
                  "ROLE:INDEX, e.g. worker:0, param_shard:1, evaluator");
  cmd->add_option("--node", o->node,
                  "Kill a whole node process instead (by name, as troupe "
                  "status shows it); its actors move to the other nodes");
  cmd->add_option("--timeout", o->timeout, "Seconds to wait for an answer")
      ->capture_default_str();
  add_secret_option(cmd, &o->secret_file);
  add_tls_option(cmd, &o->tls_dir);
  cmd->callback([o, code] { *code = kill_actor(*o); });
}

} // namespace troupe::cli

// troupe node: one per machine; runs the actors a driver places there.
#include "tools/cli/commands.hpp"
#include "tools/cli/secret.hpp"

#include "actors/memory_plan.hpp"
#include "actors/roles.hpp"
#include "actors/stages.hpp"
#include "devices/backends.hpp"
#include "runtime/node.hpp"
#include "runtime/node_log.hpp"
#include "runtime/secure_net.hpp"

#include <caf/message.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>

#include <fmt/format.h>

namespace troupe::cli {

namespace {

struct node_cli {
  std::string listen = "127.0.0.1:0";
  std::string devices = "auto";
  std::string name;
  bool json = false;
  bool quiet = false;
  double heartbeat = 0.5;
  double heartbeat_timeout = 5;
  std::int64_t threads = 0;
  std::string secret_file;
  std::string tls_dir;
  bool insecure = false;
  std::string data_root;
  std::string advertise;
  std::string log_file;
  std::vector<std::string> plugins;
};

// "auto" (the CPU and every GPU found), "cpu", "cuda:N", comma-separated.
std::vector<std::string> resolve_devices(const std::string& text) {
  std::vector<std::string> out;
  auto add = [&](const std::string& d) {
    if (std::find(out.begin(), out.end(), d) == out.end())
      out.push_back(d);
  };
  std::string why;
  std::optional<std::vector<devices::device_info>> found;
  auto gpus = [&]() -> const std::vector<devices::device_info>& {
    if (!found)
      found = devices::cuda_devices(&why);
    return *found;
  };
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "auto") {
      add("cpu");
      for (const auto& g : gpus())
        add(g.id);
    } else if (item == "cpu") {
      add("cpu");
    } else if (item.rfind("cuda", 0) == 0) {
      if (!devices::has_backend("cuda"))
        throw std::invalid_argument(
            fmt::format("--devices {}: this build has no CUDA backend", text));
      int ordinal = 0;
      try {
        ordinal = devices::parse_device_id(item).second;
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(
            fmt::format("--devices {}: {}", text, e.what()));
      }
      if (static_cast<std::size_t>(ordinal) >= gpus().size())
        throw std::invalid_argument(
            gpus().empty()
                ? fmt::format("--devices {}: {}", text, why)
                : fmt::format("--devices {}: cuda:{} does not exist (this "
                              "machine has {} GPU(s))",
                              text, ordinal, gpus().size()));
      add(fmt::format("cuda:{}", ordinal));
    } else {
      throw std::invalid_argument(fmt::format(
          "--devices {}: unknown device '{}' (auto, cpu, cuda:N)", text, item));
    }
  }
  if (out.empty())
    throw std::invalid_argument("--devices: no device given");
  return out;
}

int run(const node_cli& o) {
  runtime::node_options opts;
  try {
    auto [host, port] = runtime::parse_address(o.listen);
    opts.host = host;
    opts.port = port;
    opts.devices = resolve_devices(o.devices);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "troupe node: %s\n", e.what());
    return exit_bad_input;
  }
  if (o.heartbeat_timeout <= o.heartbeat) {
    std::fprintf(stderr,
                 "troupe node: --heartbeat-timeout must exceed --heartbeat\n");
    return exit_bad_input;
  }
  try {
    for (const auto& p : o.plugins)
      stages::load_plugin(p);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe node: %s\n", e.what());
    return exit_bad_input;
  }
  try {
    opts.secret = cli_secret(o.secret_file);
    opts.tls = cli_tls(o.tls_dir);
  } catch (const runtime::secret_error& e) {
    std::fprintf(stderr, "troupe node: %s\n", e.what());
    return exit_bad_input;
  } catch (const runtime::tls_error& e) {
    std::fprintf(stderr, "troupe node: %s\n", e.what());
    return exit_bad_input;
  }
  opts.insecure = o.insecure;
  opts.advertise = o.advertise;
  if (!o.log_file.empty()) {
    auto why = runtime::open_node_log(
        o.log_file,
        o.name.empty() ? runtime::advertised_host(o.listen, "") : o.name);
    if (!why.empty()) {
      std::fprintf(stderr, "troupe node: %s\n", why.c_str());
      return exit_bad_input;
    }
  }
  // What a peer may have spawned here: the roles of a job's actors, never
  // a coordinator (that runs in the driver).
  for (auto r : actors::all_roles)
    opts.roles.push_back(actors::name_of(r));
  // Each request is checked here again, whatever the driver checked.
  opts.check_spawn = [root = o.data_root,
                      memory = runtime::machine_memory_bytes()](
                         const std::string& role, const caf::message& args) {
    auto why = actors::check_spawn_request(role, args, root, memory);
    // Accepted: the job's messages may now be as large as it needs.
    if (why.empty())
      runtime::raise_message_limit(
          actors::largest_message(args.get_as<actors::job_spec>(0)));
    return why;
  };
  actors::set_serving_peers(true);
  opts.name = o.name;
  opts.network.heartbeat_s = o.heartbeat;
  opts.network.heartbeat_timeout_s = o.heartbeat_timeout;
  opts.network.threads = o.threads;
  if (o.quiet)
    std::freopen("/dev/null", "w", stderr);
  struct close_log {
    ~close_log() { runtime::close_node_log(); }
  } closing;
  return runtime::run_node(
      opts, [](caf::actor_system_config& cfg) { actors::register_roles(cfg); },
      [&](const runtime::node_info& info) {
        if (o.json) {
          nlohmann::ordered_json j{
              {"address", fmt::format("{}:{}", info.host, info.port)},
              {"name", info.name},
              {"cores", info.cores},
              {"memory_bytes", info.memory_bytes},
              {"devices", info.devices},
              {"pid", info.pid},
              {"data_plane", info.bulk},
              {"secret", opts.secret.set},
              {"tls", opts.tls != nullptr}};
          std::printf("%s\n", j.dump().c_str());
        } else {
          std::printf("%s:%u\n", info.host.c_str(),
                      static_cast<unsigned>(info.port));
        }
      });
}

} // namespace

void add_node_command(CLI::App& app, int* code) {
  auto o = std::make_shared<node_cli>();
  auto* cmd = app.add_subcommand(
      "node", "Run a node: actors of jobs are placed here. Prints its address "
              "(HOST:PORT) as the first line; stops on SIGINT/SIGTERM");
  cmd->add_option("--listen", o->listen,
                  "HOST:PORT to listen on (port 0: the OS picks)")
      ->capture_default_str();
  cmd->add_option(
         "--devices", o->devices,
         "auto (the CPU and every GPU found), cpu, or cuda:N,... (what "
         "this node offers to workers)")
      ->capture_default_str();
  cmd->add_option("--name", o->name, "Node name (default HOST:PORT)");
  cmd->add_flag("--json", o->json, "Print the first line as a JSON object");
  cmd->add_option("--heartbeat", o->heartbeat,
                  "Seconds between heartbeats (same on every node)")
      ->capture_default_str();
  cmd->add_option("--heartbeat-timeout", o->heartbeat_timeout,
                  "A silent peer is lost after this many seconds")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads,
                  "Scheduler threads (0 = one per core)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("-q,--quiet", o->quiet, "Nothing on stderr");
  add_secret_option(cmd, &o->secret_file);
  add_tls_option(cmd, &o->tls_dir);
  cmd->add_option("--data-root", o->data_root,
                  "Read data files only under DIR (default: any path the "
                  "driver names)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--advertise", o->advertise,
                  "The host peers dial to reach this node (default: the "
                  "--listen host; for 0.0.0.0, this machine's first "
                  "non-loopback IPv4 address)");
  cmd->add_option("--plugin", o->plugins,
                  "A shared library of custom stages to load (repeatable); "
                  "jobs that place its stages here need it")
      ->allow_extra_args(false);
  cmd->add_option("--log-file", o->log_file,
                  "Append structured lines (JSON: time, node, job, actor, "
                  "event, detail) to FILE");
  cmd->add_flag("--insecure", o->insecure,
                "Listen beyond loopback without a cluster secret or TLS "
                "(anyone who reaches the port may use the node)");
  cmd->callback([o, code] { *code = run(*o); });
}

} // namespace troupe::cli

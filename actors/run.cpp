#include "actors/run.hpp"
#include "actors/roles.hpp"
#include "actors/stages.hpp"

#include "devices/backends.hpp"

#include "actors/memory_plan.hpp"
#include "actors/messages.hpp"
#include "actors/placement.hpp"
#include "runtime/bulk_caf.hpp"
#include "runtime/cluster.hpp"
#include "runtime/config.hpp"
#include "runtime/digest.hpp"
#include "runtime/secure_net.hpp"
#include "runtime/snapshot.hpp"
#include "runtime/tls.hpp"

#include <caf/io/all.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

data_facts facts_of(const data::dataset& ds) {
  return {ds.samples,     ds.features,     ds.classes, ds.targets,
          ds.description, ds.sample_shape, ds.labels};
}

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

// Spawns the job's actors where the plan says and returns who is where.
topology spawn_job(caf::actor_system& sys, const job_spec& spec,
                   const placement_plan& plan,
                   const std::vector<runtime::node_handle>& nodes,
                   const std::vector<std::string>& node_names,
                   const std::string& job_id, const caf::actor& owner,
                   std::chrono::milliseconds timeout) {
  topology t;
  t.job_id = job_id;
  t.owner = owner;
  t.nodes = static_cast<std::int64_t>(node_names.size());
  t.node_names = node_names;
  t.aggregator_of_worker = plan.aggregator_of_worker;
  t.data_shard_of_worker = plan.data_shard_of_worker;
  for (const auto& n : nodes) {
    t.managers.push_back(n.manager);
    t.node_devices.push_back(n.info.devices);
  }
  caf::scoped_actor self{sys};
  // Every node learns where the others' data planes listen.
  std::vector<std::string> keys, planes;
  for (const auto& n : nodes)
    if (!n.info.bulk.empty()) {
      keys.push_back(runtime::bulk_key(n.manager.node()));
      planes.push_back(n.info.bulk);
    }
  for (const auto& n : nodes) {
    std::string failure;
    self->request(n.manager, timeout, runtime::peers_atom::value, keys, planes)
        .receive([](bool) {},
                 [&](caf::error& err) { failure = sys.render(err); });
    if (!failure.empty())
      throw cluster_unreachable(
          fmt::format("node {} ({}): {}", n.info.name, n.address, failure));
  }
  // ... and connects directly to the nodes after it in the list (one
  // connection per pair), before any actor talks across them.
  for (std::size_t i = 0; i + 1 < nodes.size(); ++i) {
    std::vector<std::string> later;
    for (std::size_t j = i + 1; j < nodes.size(); ++j)
      later.push_back(nodes[j].address);
    std::vector<std::string> failures;
    std::string failure;
    self->request(nodes[i].manager, timeout + std::chrono::seconds(1),
                  runtime::mesh_atom::value, later,
                  static_cast<std::int64_t>(timeout.count()))
        .receive([&](std::vector<std::string>& f) { failures = std::move(f); },
                 [&](caf::error& err) { failure = sys.render(err); });
    if (!failure.empty())
      failures.push_back(failure);
    if (!failures.empty())
      throw cluster_unreachable(fmt::format(
          "node {} ({}) cannot connect to the other nodes: {}",
          nodes[i].info.name, nodes[i].address, fmt::join(failures, "; ")));
  }
  auto spawn = [&](role kind, std::int32_t index, std::int32_t node,
                   caf::message args) {
    const std::string role_name = name_of(kind);
    const auto name = to_string(actor_id{kind, index});
    caf::actor h;
    if (nodes.empty()) {
      auto r = sys.spawn<caf::actor>(role_name, std::move(args));
      if (!r)
        throw training_failed(
            fmt::format("cannot spawn {}: {}", name, sys.render(r.error())));
      h = *r;
    } else {
      const auto& n = nodes[static_cast<std::size_t>(node)];
      std::string failure;
      self->request(n.manager, timeout, runtime::spawn_atom::value, job_id,
                    owner, role_name, std::move(args))
          .receive([&](caf::actor& a) { h = std::move(a); },
                   [&](caf::error& err) { failure = sys.render(err); });
      if (!failure.empty())
        throw cluster_unreachable(
            fmt::format("node {} ({}): cannot spawn {}: {}", n.info.name,
                        n.address, name, failure));
    }
    t.names[h.address()] = name;
    t.placement[name] = node_names[static_cast<std::size_t>(node)];
    return h;
  };
  const auto args = [&](role r, std::int32_t index) {
    return spawn_args({r, index}, spec, plan.aggregator_of_worker);
  };
  for (std::int32_t i = 0; i < spec.shards; ++i)
    t.data_shards.push_back(spawn(role::data_shard, i,
                                  plan.data_shards[static_cast<std::size_t>(i)],
                                  args(role::data_shard, i)));
  for (std::size_t i = 0; i < plan.stages.size(); ++i) {
    const auto k = static_cast<std::int32_t>(i);
    t.stages.push_back(
        spawn(role::stage, k, plan.stages[i], args(role::stage, k)));
  }
  for (std::int32_t i = 0; i < spec.partitions; ++i)
    t.param_shards.push_back(spawn(
        role::param_shard, i, plan.param_shards[static_cast<std::size_t>(i)],
        args(role::param_shard, i)));
  for (std::size_t a = 0; a < plan.aggregators.size(); ++a) {
    const auto i = static_cast<std::int32_t>(a);
    t.aggregators.push_back(spawn(role::aggregator, i, plan.aggregators[a].node,
                                  args(role::aggregator, i)));
  }
  if (!spec.test.empty())
    t.evaluator =
        spawn(role::evaluator, 0, plan.evaluator, args(role::evaluator, 0));
  for (std::int32_t r = 0; r < spec.workers; ++r)
    t.workers.push_back(spawn(role::worker, r,
                              plan.workers[static_cast<std::size_t>(r)],
                              args(role::worker, r)));
  return t;
}

// --checkpoint-dir: made if missing; files of an earlier run are resumed
// from (--resume) or left alone (an error: nothing written is lost). A
// checkpoint of another job is refused by name.
void check_checkpoint_dir(const cluster_options& copt, const job_spec& spec,
                          const std::string& fingerprint) {
  namespace fs = std::filesystem;
  const auto& dir = copt.checkpoint_dir;
  if (copt.resume && !spec.controller.type.empty())
    throw runtime::config_error(fmt::format(
        "--resume: a job with a [controller] ({}) cannot be resumed: its "
        "decisions on the epochs before the checkpoint are not in it",
        spec.controller.type));
  if (dir.empty()) {
    if (copt.resume)
      throw runtime::config_error(
          "--resume needs --checkpoint-dir DIR (where the checkpoints are)");
    return;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw runtime::config_error(fmt::format(
        "--checkpoint-dir {}: cannot create the directory{}", dir,
        ec ? ": " + ec.message() : std::string(": a file is in the way")));
  const auto probe = dir + "/.troupe-write-test";
  if (!std::ofstream(probe))
    throw runtime::config_error(
        fmt::format("--checkpoint-dir {}: cannot write there", dir));
  fs::remove(probe, ec);
  const auto files = list_snapshots(dir);
  if (files.empty())
    return;
  if (!copt.resume)
    throw runtime::config_error(fmt::format(
        "--checkpoint-dir {} holds checkpoints already ({} and {} more); "
        "pass --resume to continue from them, or choose another directory",
        dir, std::get<2>(files.front()), files.size() - 1));
  for (const auto& f : files) {
    try {
      const auto snap = runtime::read_snapshot_file(std::get<2>(f));
      if (snap.job != fingerprint)
        throw runtime::config_error(fmt::format(
            "--resume: {} was written by a different job (the model, data, "
            "optimizer, seed, batch, workers or partitions differ)",
            std::get<2>(f)));
      return; // one good file of this job is enough here
    } catch (const runtime::snapshot_error&) {
      // A bad file: the store reports it and falls back.
    }
  }
}

} // namespace

std::string job_fingerprint(caf::actor_system& sys, job_spec s) {
  s.name.clear();
  s.epochs = 0;
  s.test.clear();
  s.prefetch = 0;
  s.local_nodes = 0;
  s.device.clear();
  s.worker_devices.clear();
  s.threads = 0;
  s.strategy.clear();
  s.max_restarts = 0;
  s.within_s = 0;
  s.snapshot_every = 0;
  s.heartbeat_s = 0;
  s.heartbeat_timeout_s = 0;
  s.chaos.clear();
  s.placement.clear();
  s.slow_worker = -1;
  s.slow_ms = 0;
  s.detached_compute = false;
  s.incarnation = 0;
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  if (auto err = sink(s))
    throw training_failed("cannot fingerprint the job: " + sys.render(err));
  return runtime::sha256_hex(buf.data(), buf.size());
}

run_result run_job(job_spec spec, const run_observer& obs,
                   const cluster_options& copt) {
  const auto t0 = std::chrono::steady_clock::now();
  auto info = [&](const std::string& s) {
    if (obs.on_info)
      obs.on_info(s);
  };
  // Load and check the data before anything starts: bad input ends here
  // with a message naming the file. Actors in this process share it.
  std::shared_ptr<const data::dataset> train;
  std::shared_ptr<const data::dataset> test;
  if (!spec.exchange_only) {
    train = data::load_shared(train_source(spec));
    info(fmt::format("train: {}", train->description));
    spec.labels = train->labels; // the test set maps text labels by them
    data_facts test_facts;
    if (!spec.test.empty()) {
      test = data::load_shared(test_source(spec));
      test_facts = facts_of(*test);
      info(fmt::format("test:  {}", test->description));
    }
    resolve_job_spec(spec, facts_of(*train), test ? &test_facts : nullptr);
  }

  const bool distributed = !copt.nodes.empty() || spec.local_nodes > 1;
  const auto timeout = millis(copt.connect_timeout_s);
  runtime::network_options net;
  net.heartbeat_s = spec.heartbeat_s;
  net.heartbeat_timeout_s = spec.heartbeat_timeout_s;
  // Local nodes share this machine's cores: by default each gets its share
  // (idle CAF worker threads poll, and oversubscribed cores slow the
  // workers); the driver itself only hosts the coordinator.
  const auto cores =
      std::max<std::int64_t>(1, std::thread::hardware_concurrency());
  net.threads = spec.threads > 0 ? spec.threads
                : copt.nodes.empty()
                    ? std::max<std::int64_t>(1, cores / spec.local_nodes)
                    : 0;
  net.plugins = stages::loaded_plugins();
  runtime::network_options driver_net = net;
  driver_net.threads = spec.threads > 0 ? spec.threads : 1;
  caf::actor_system_config cfg;
  register_roles(cfg);
  runtime::register_node_types(cfg);
  if (distributed) {
    runtime::configure_network(cfg, driver_net);
  } else {
    cfg.set("scheduler.max-threads",
            spec.threads > 0 ? static_cast<std::size_t>(spec.threads)
                             : std::max<std::size_t>(
                                   1, std::thread::hardware_concurrency()));
  }
  // Local node processes outlive the actor system below (declared first).
  std::unique_ptr<runtime::local_nodes> children;
  auto addresses = copt.nodes;
  auto secret = copt.secret;
  if (distributed && addresses.empty() && !secret.set)
    secret = runtime::make_secret(); // local nodes: one secret per job
  if (distributed && addresses.empty()) {
    // Node processes run `troupe node`: the given executable, else the
    // troupe binary beside this program (graph-API programs live there).
    auto exe = copt.executable;
    if (exe.empty()) {
      char buf[4096];
      const auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
      std::string self =
          n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
      exe = self.substr(0, self.rfind('/') + 1) + "troupe";
    }
    try {
      children = std::make_unique<runtime::local_nodes>(
          exe, static_cast<int>(spec.local_nodes), net, secret, timeout,
          copt.tls ? copt.tls->dir() : std::string{});
    } catch (const runtime::cluster_error& e) {
      throw cluster_unreachable(e.what());
    }
    addresses = children->addresses();
    info(fmt::format("started {} local node(s): {}", spec.local_nodes,
                     fmt::join(addresses, ", ")));
  }
  caf::actor_system sys{cfg};
  std::optional<runtime::secure_net> guarded; // goes before sys
  if (distributed) {
    runtime::net_security sec;
    sec.secret = secret;
    sec.tls = copt.tls;
    sec.connect_timeout_s = copt.connect_timeout_s;
    sec.who = "troupe run";
    guarded.emplace(sys, sec);
  }
  std::vector<runtime::node_handle> nodes;
  std::vector<node_slot> slots;
  std::vector<std::string> names;
  if (distributed) {
    try {
      nodes = runtime::connect_nodes(sys, addresses, timeout);
    } catch (const runtime::cluster_error& e) {
      throw cluster_unreachable(e.what());
    }
    for (const auto& n : nodes) {
      slots.push_back({n.info.name, n.info.devices});
      names.push_back(n.info.name);
      // Each process detects lost peers by its own settings: a node's
      // that differ from the pipeline's make losses found at other times.
      auto differs = [](double a, double b) { return std::abs(a - b) > 1e-9; };
      if (n.info.heartbeat_s > 0 &&
          (differs(n.info.heartbeat_s, spec.heartbeat_s) ||
           differs(n.info.heartbeat_timeout_s, spec.heartbeat_timeout_s)))
        info(fmt::format(
            "warning: node {} runs heartbeat {} s, timeout {} s; the pipeline "
            "says supervision.heartbeat_s = {}, heartbeat_timeout_s = {}: "
            "this driver finds a node lost by the pipeline's, that node finds "
            "its peers lost by its own (start it with --heartbeat {} "
            "--heartbeat-timeout {} to match)",
            n.info.name, n.info.heartbeat_s, n.info.heartbeat_timeout_s,
            spec.heartbeat_s, spec.heartbeat_timeout_s, spec.heartbeat_s,
            spec.heartbeat_timeout_s));
    }
  } else {
    // This process is the one node: it offers its GPUs when the job may
    // use them.
    std::vector<std::string> local{"cpu"};
    if (spec.device != "cpu")
      for (const auto& g : devices::cuda_devices())
        local.push_back(g.id);
    slots.push_back({"local", local});
    names.push_back("local");
  }
  for (std::size_t i = 0; i < spec.chaos.size(); ++i) {
    const auto& e = spec.chaos[i];
    if (e.role != "node")
      continue;
    const auto key = fmt::format("chaos[{}].{}", i, e.action);
    if (!distributed)
      throw runtime::config_error(
          fmt::format("{}: node faults need a job on several node processes "
                      "(cluster.local_nodes > 1, or --nodes)",
                      key));
    if (std::find(names.begin(), names.end(), e.node) == names.end())
      throw runtime::config_error(fmt::format("{}: no node \"{}\" in this job "
                                              "(nodes: {})",
                                              key, e.node,
                                              fmt::join(names, ", ")));
  }
  snapshot_options snap;
  snap.job = job_fingerprint(sys, spec);
  check_checkpoint_dir(copt, spec, snap.job);
  snap.dir = copt.checkpoint_dir;
  snap.keep = !copt.checkpoint_dir.empty();
  snap.resume = copt.resume;
  const auto plan = plan_placement(spec, slots);
  spec.worker_devices = plan.worker_devices;
  // Snapshots and restores of whole shards cross to and from this process.
  runtime::raise_message_limit(largest_message(spec));
  {
    // Refused now, with the figures, rather than a node swapping or killed
    // by the kernel later. Local nodes share this machine's memory.
    const double train_bytes =
        train ? double(train->x.bytes() + train->y.bytes()) : 0;
    const double test_bytes =
        test ? double(test->x.bytes() + test->y.bytes()) : 0;
    if (!distributed || children) {
      auto one = plan;
      for (auto* v : {&one.workers, &one.param_shards, &one.data_shards})
        std::fill(v->begin(), v->end(), 0);
      for (auto& a : one.aggregators)
        a.node = 0;
      one.evaluator = 0;
      check_memory_fit(spec, one,
                       {children ? fmt::format("this machine ({} local nodes)",
                                               spec.local_nodes)
                                 : std::string("this machine")},
                       {runtime::machine_memory_bytes()}, train_bytes,
                       test_bytes);
    } else {
      std::vector<std::int64_t> memory;
      std::vector<std::string> where;
      for (const auto& n : nodes) {
        memory.push_back(n.info.memory_bytes);
        where.push_back("node " + n.info.name);
      }
      check_memory_fit(spec, plan, where, memory, train_bytes, test_bytes);
    }
  }
  std::optional<run_result> result;
  std::string failure;
  std::string coordinator_address;
  std::string job_secret_file;
  // Removed however the job ends.
  struct remove_file {
    std::string* path;
    ~remove_file() {
      if (!path->empty())
        ::unlink(path->c_str());
    }
  } remove_secret{&job_secret_file};
  {
    // The job's anchor in this process: the nodes stop the job's actors
    // when it is gone (this driver ended, was killed or cut off).
    // (An argument, because CAF 0.17 dereferences a null argument tuple
    // for function actors spawned without any, which UBSan reports.)
    auto anchor = sys.spawn(
        [](caf::event_based_actor*, int) -> caf::behavior {
          return {[](runtime::reset_atom) {}};
        },
        0);
    const auto job_id = fmt::format(
        "{}-{}", spec.name.empty() ? "job" : spec.name.substr(0, 64),
        runtime::secret_to_hex(runtime::make_secret()).substr(0, 12));
    struct stop_anchor {
      caf::actor a;
      ~stop_anchor() {
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      }
    } anchor_guard{anchor};
    auto t = spawn_job(sys, spec, plan, nodes, names, job_id, anchor, timeout);
    caf::scoped_actor self{sys};
    auto coord = sys.spawn<caf::actor>(
        "coordinator",
        caf::make_message(spec, caf::actor_cast<caf::actor>(self), std::move(t),
                          std::move(snap)));
    if (!coord)
      throw training_failed("cannot start the coordinator: " +
                            sys.render(coord.error()));
    self->monitor(*coord);
    // Epoch parameters reach the coordinator over the data plane, on
    // connections opened for this job.
    runtime::bind_to_job(coord->id(), runtime::job_tag(job_id));
    struct unbind_coordinator {
      caf::actor_id id;
      ~unbind_coordinator() { runtime::unbind_from_job(id); }
    } coordinator_binding{coord->id()};
    if (distributed && !copt.coordinator_host.empty()) {
      auto port = runtime::secure_publish(sys, *coord, copt.coordinator_port,
                                          copt.coordinator_host);
      if (port) {
        coordinator_address =
            fmt::format("{}:{}", copt.coordinator_host, *port);
        // The job's own secret, for `troupe status`/`kill` of this user;
        // a file of a dead job that had this port goes in any case.
        try {
          const auto path = runtime::job_secret_path(coordinator_address);
          ::unlink(path.c_str());
          if (!copt.secret.set && secret.set) {
            job_secret_file = path;
            runtime::write_secret_file(job_secret_file, secret);
          }
        } catch (const runtime::secret_error& e) {
          if (!copt.secret.set && secret.set) {
            info(fmt::format("troupe status will not reach this job: {}",
                             e.what()));
            job_secret_file.clear();
          }
        }
        info(fmt::format("coordinator at {} (troupe status --coordinator {})",
                         coordinator_address, coordinator_address));
      } else {
        info(fmt::format("cannot publish the coordinator at {}:{}: {}",
                         copt.coordinator_host, copt.coordinator_port,
                         runtime::describe(sys, port.error())));
      }
    }
    // No step may take longer than this without any progress report.
    const auto stall = std::chrono::seconds(600);
    bool running = true;
    while (running) {
      self->receive(
          [&](info_atom, const std::string& s) { info(s); },
          [&](status_atom, const job_status& s) {
            if (obs.on_status)
              obs.on_status(s);
          },
          [&](event_atom, const job_event& e) {
            if (obs.on_event)
              obs.on_event(e);
            else
              info(e.message);
          },
          [&](progress_atom, std::int64_t done, std::int64_t total, double loss,
              double lr) {
            if (obs.on_progress)
              obs.on_progress(done, total, loss, lr);
          },
          [&](epoch_atom, const epoch_summary& s) {
            if (obs.on_epoch)
              obs.on_epoch(s);
          },
          [&](keep_model_atom, std::int64_t epoch, devices::tensor& params,
              std::string& reason) {
            if (!obs.on_checkpoint) {
              info(fmt::format("the controller asked to keep epoch {}'s "
                               "model; this program does not write it",
                               epoch));
              return;
            }
            epoch_checkpoint c;
            c.epoch = epoch;
            c.reason = std::move(reason);
            auto& m = c.model;
            m.job = spec.name;
            m.mode = spec.mode;
            m.epochs = spec.epochs;
            m.best_epoch = epoch;
            m.param_count = params.numel();
            m.params.assign(params.data(), params.data() + params.numel());
            m.params_digest =
                runtime::sha256_hex(params.data(), params.bytes());
            m.input_shape = spec.model_input();
            m.classes = spec.classification() ? spec.outputs : 0;
            m.labels = spec.labels;
            obs.on_checkpoint(c);
          },
          [&](done_atom, run_result& r) { result = std::move(r); },
          [&](failed_atom, const std::string& why) { failure = why; },
          [&](caf::down_msg& dm) {
            running = false;
            if (!result && failure.empty())
              failure = "the coordinator stopped: " + sys.render(dm.reason);
          },
          caf::after(stall) >>
              [&] {
                failure = fmt::format("no progress for {} s; stopping the job",
                                      stall.count());
                self->send_exit(*coord, caf::exit_reason::kill);
              });
    }
    // Nodes given with --nodes keep running: drop what this job left there.
    for (auto& n : nodes)
      self->send(n.manager, runtime::reset_atom::value, job_id);
  }
  if (!result)
    throw training_failed(failure.empty() ? "training failed" : failure);
  result->coordinator = coordinator_address;
  result->wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  return *result;
}

} // namespace troupe::actors

#include "actors/run.hpp"

#include "actors/messages.hpp"
#include "actors/placement.hpp"
#include "runtime/bulk_caf.hpp"
#include "runtime/cluster.hpp"

#include <caf/io/all.hpp>

#include <chrono>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

data_facts facts_of(const data::dataset& ds) {
  return {ds.samples, ds.features, ds.classes, ds.targets, ds.description};
}

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

// Spawns the job's actors where the plan says and returns who is where.
topology spawn_job(caf::actor_system& sys, const job_spec& spec,
                   const placement_plan& plan,
                   const std::vector<runtime::node_handle>& nodes,
                   const std::vector<std::string>& node_names,
                   std::chrono::milliseconds timeout) {
  topology t;
  t.nodes = static_cast<std::int64_t>(node_names.size());
  t.node_names = node_names;
  t.aggregator_of_worker = plan.aggregator_of_worker;
  t.data_shard_of_worker = plan.data_shard_of_worker;
  for (const auto& n : nodes)
    t.managers.push_back(n.manager);
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
  auto spawn = [&](const std::string& role, const std::string& name,
                   std::int32_t node, caf::message args) {
    caf::actor h;
    if (nodes.empty()) {
      auto r = sys.spawn<caf::actor>(role, std::move(args));
      if (!r)
        throw training_failed(
            fmt::format("cannot spawn {}: {}", name, sys.render(r.error())));
      h = *r;
    } else {
      const auto& n = nodes[static_cast<std::size_t>(node)];
      std::string failure;
      self->request(n.manager, timeout, runtime::spawn_atom::value, role,
                    std::move(args))
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
  for (std::int32_t i = 0; i < spec.shards; ++i)
    t.data_shards.push_back(spawn("data_shard", fmt::format("data_shard:{}", i),
                                  plan.data_shards[static_cast<std::size_t>(i)],
                                  caf::make_message(spec, i)));
  for (std::int32_t i = 0; i < spec.partitions; ++i)
    t.param_shards.push_back(
        spawn("param_shard", fmt::format("param_shard:{}", i),
              plan.param_shards[static_cast<std::size_t>(i)],
              caf::make_message(spec, i)));
  for (std::size_t a = 0; a < plan.aggregators.size(); ++a) {
    const auto& slot = plan.aggregators[a];
    t.aggregators.push_back(
        spawn("aggregator", fmt::format("aggregator:{}", a), slot.node,
              caf::make_message(spec, static_cast<std::int32_t>(a), slot.lo,
                                slot.hi)));
  }
  if (!spec.test.empty())
    t.evaluator = spawn("evaluator", "evaluator", plan.evaluator,
                        caf::make_message(spec));
  for (std::int32_t r = 0; r < spec.workers; ++r)
    t.workers.push_back(spawn("worker", fmt::format("worker:{}", r),
                              plan.workers[static_cast<std::size_t>(r)],
                              caf::make_message(spec, r)));
  return t;
}

} // namespace

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
          exe, static_cast<int>(spec.local_nodes), net, timeout);
    } catch (const runtime::cluster_error& e) {
      throw cluster_unreachable(e.what());
    }
    addresses = children->addresses();
    info(fmt::format("started {} local node(s): {}", spec.local_nodes,
                     fmt::join(addresses, ", ")));
  }
  caf::actor_system sys{cfg};
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
    }
  } else {
    slots.push_back({"local", {"cpu"}});
    names.push_back("local");
  }
  const auto plan = plan_placement(spec, slots);
  std::optional<run_result> result;
  std::string failure;
  std::string coordinator_address;
  {
    auto t = spawn_job(sys, spec, plan, nodes, names, timeout);
    caf::scoped_actor self{sys};
    auto coord = sys.spawn<caf::actor>(
        "coordinator",
        caf::make_message(spec, caf::actor_cast<caf::actor>(self),
                          std::move(t)));
    if (!coord)
      throw training_failed("cannot start the coordinator: " +
                            sys.render(coord.error()));
    self->monitor(*coord);
    if (distributed && !copt.coordinator_host.empty()) {
      auto port = sys.middleman().publish(*coord, copt.coordinator_port,
                                          copt.coordinator_host.c_str(), true);
      if (port) {
        coordinator_address =
            fmt::format("{}:{}", copt.coordinator_host, *port);
        info(fmt::format("coordinator at {} (troupe status --coordinator {})",
                         coordinator_address, coordinator_address));
      } else {
        info(fmt::format("cannot publish the coordinator at {}:{}: {}",
                         copt.coordinator_host, copt.coordinator_port,
                         sys.render(port.error())));
      }
    }
    // No step may take longer than this without any progress report.
    const auto stall = std::chrono::seconds(600);
    bool running = true;
    while (running) {
      self->receive(
          [&](info_atom, const std::string& s) { info(s); },
          [&](progress_atom, std::int64_t done, std::int64_t total,
              double loss) {
            if (obs.on_progress)
              obs.on_progress(done, total, loss);
          },
          [&](epoch_atom, const epoch_summary& s) {
            if (obs.on_epoch)
              obs.on_epoch(s);
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
      self->send(n.manager, runtime::reset_atom::value);
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

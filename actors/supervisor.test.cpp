// The supervision protocol, deterministically: the real coordinator and
// supervisor (and snapshot store) under CAF's test scheduler, which runs
// every actor on this thread, one message at a time, with time standing
// still until a test lets it pass. The roles are fakes that log what they
// are told and answer what the supervisor asks; node managers are fakes
// that spawn them. Each test plays a sequence of failures and checks what
// each actor (by incarnation) was told, in order, and what the job said.
// The subprocess runs in tests/ remain the system tests.
#include "actors/messages.hpp"
#include "runtime/node_protocol.hpp"

#include "devices/nn/layers.hpp"

#include <caf/scheduler/test_coordinator.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>

#include <unistd.h>

#include <fmt/format.h>

namespace ta = troupe::actors;
namespace tr = troupe::runtime;

namespace {

// What the fakes were told ("worker:0/1 recover 4": actor/incarnation
// event) and what the job said to its listener ("info: ...").
std::vector<std::string> told;
std::vector<std::string> said;
// The statuses the job pushed to its listener (at the start, after events).
std::vector<ta::job_status> statuses;

std::string who(const char* role, std::int32_t index, const ta::job_spec& s) {
  return fmt::format("{}:{}/{}", role, index, s.incarnation);
}

caf::behavior fake_param_shard(caf::event_based_actor* self, ta::job_spec spec,
                               std::int32_t index) {
  self->set_default_handler(caf::drop);
  const auto me = who("param_shard", index, spec);
  auto version = std::make_shared<std::int64_t>(0);
  return {
      [=](ta::wire_atom, const std::vector<caf::actor>&,
          const std::vector<std::int32_t>&, const caf::actor&,
          const caf::actor&) { told.push_back(me + " wired"); },
      [=](ta::wire_atom) { return true; },
      [=](ta::version_atom) { return *version; },
      [=](ta::version_atom, std::int32_t) { return *version; },
      [=](ta::restore_atom, const ta::shard_state_msg& m) {
        *version = m.version;
        told.push_back(fmt::format("{} restore v{}", me, m.version));
      },
      [=](ta::republish_atom, const caf::actor&) {
        told.push_back(me + " republish");
      },
      [=](ta::fetch_atom, std::int64_t step, std::int32_t worker,
          const caf::actor&) {
        told.push_back(fmt::format("{} fetch worker:{} {}", me, worker, step));
      },
      [=](ta::snapshot_atom) { told.push_back(me + " snapshot"); },
      [=](ta::snapshot_atom, ta::done_atom) { return *version; },
      // The test moves a shard's version as training would.
      [=](ta::version_atom, std::int64_t v) { *version = v; },
  };
}

caf::behavior fake_worker(caf::event_based_actor* self, ta::job_spec spec,
                          std::int32_t index) {
  self->set_default_handler(caf::drop);
  const auto me = who("worker", index, spec);
  return {
      [=](ta::wire_atom, const caf::actor&, const caf::actor&,
          const caf::actor&,
          const std::vector<caf::actor>&) { told.push_back(me + " wired"); },
      [=](ta::start_atom) { told.push_back(me + " start"); },
      [=](ta::recover_atom, std::int64_t step) {
        told.push_back(fmt::format("{} recover {}", me, step));
      },
      [=](ta::replay_atom, std::int32_t shard, std::int64_t from) {
        told.push_back(
            fmt::format("{} replay param_shard:{} from {}", me, shard, from));
      },
  };
}

caf::behavior fake_aggregator(caf::event_based_actor* self, ta::job_spec spec,
                              std::int32_t index, std::int32_t, std::int32_t) {
  self->set_default_handler(caf::drop);
  const auto me = who("aggregator", index, spec);
  return {
      [=](ta::wire_atom, const std::vector<caf::actor>&,
          const std::vector<caf::actor>&) { told.push_back(me + " wired"); },
      [=](ta::wire_atom) { return true; },
  };
}

caf::behavior fake_data_shard(caf::event_based_actor* self, ta::job_spec,
                              std::int32_t) {
  self->set_default_handler(caf::drop);
  return {[](ta::credit_atom) {}};
}

caf::behavior fake_evaluator(caf::event_based_actor* self, ta::job_spec spec) {
  self->set_default_handler(caf::drop);
  const auto me = who("evaluator", 0, spec);
  return {
      [=](ta::wire_atom, const caf::actor&) { told.push_back(me + " wired"); },
      [=](ta::params_msg& p) {
        told.push_back(fmt::format("{} epoch {}", me, p.tag));
      },
  };
}

// While set, node managers hold spawn requests (counted in `stalled`) until
// told release_atom, as a busy node is slow to answer.
bool stall_spawns = false;
std::size_t stalled = 0;
using release_atom = caf::atom_constant<caf::atom("release")>;

// A node manager: spawns the roles it is asked for, here; logs faults.
caf::behavior fake_manager(caf::event_based_actor* self, std::string node) {
  self->set_default_handler(caf::drop);
  auto held = std::make_shared<std::vector<std::function<void()>>>();
  return {
      [=](tr::spawn_atom, const std::string&, const caf::actor&,
          const std::string& role,
          caf::message& args) -> caf::result<caf::actor> {
        told.push_back(fmt::format("node {} spawns {}", node, role));
        if (stall_spawns) {
          ++stalled;
          auto rp = self->make_response_promise<caf::actor>();
          held->push_back([=]() mutable {
            auto h = self->system().spawn<caf::actor>(role, args);
            if (h)
              rp.deliver(*h);
            else
              rp.deliver(h.error());
          });
          return rp;
        }
        auto h = self->system().spawn<caf::actor>(role, std::move(args));
        if (!h)
          return h.error();
        return *h;
      },
      [=](release_atom) {
        for (auto& spawn : *held)
          spawn();
        held->clear();
      },
      [=](tr::forget_atom, const std::string&) {
        told.push_back(fmt::format("node {} forgets a peer", node));
      },
      [=](tr::fault_atom, const std::string& action) {
        told.push_back(fmt::format("node {} fault {}", node, action));
      },
  };
}

// (An argument, as CAF 0.17 function actors without one trip UBSan.)
caf::behavior listener(caf::event_based_actor* self, int) {
  self->set_default_handler(caf::drop);
  return {
      [](ta::info_atom, const std::string& line) {
        said.push_back("info: " + line);
      },
      [](ta::event_atom, const ta::job_event& e) {
        said.push_back(fmt::format("{} event: {}", e.kind, e.message));
      },
      [](ta::failed_atom, const std::string& why) {
        said.push_back("failed: " + why);
      },
      [](ta::done_atom, const ta::run_result& r) {
        said.push_back(fmt::format("done: restarts {} rollbacks {} lost {}",
                                   r.restarts, r.rollbacks,
                                   fmt::join(r.lost_nodes, ",")));
      },
      [](ta::epoch_atom, const ta::epoch_summary& s) {
        said.push_back(fmt::format("epoch {}", s.epoch));
      },
      [](ta::progress_atom, std::int64_t, std::int64_t, double, double) {},
      [](ta::status_atom, const ta::job_status& s) { statuses.push_back(s); },
  };
}

struct config : caf::actor_system_config {
  config() {
    set("scheduler.policy", caf::atom("testing"));
    set("logger.file-verbosity", caf::atom("quiet"));
    set("logger.console-verbosity", caf::atom("quiet"));
    add_actor_type("param_shard", fake_param_shard);
    add_actor_type("worker", fake_worker);
    add_actor_type("aggregator", fake_aggregator);
    add_actor_type("data_shard", fake_data_shard);
    add_actor_type("evaluator", fake_evaluator);
    ta::register_coordinator(*this);
  }
};

// A job of 2 workers on one aggregator, 2 param shards, 1 data shard and
// an evaluator, 4 steps per epoch, a snapshot every 2 steps.
struct fixture {
  config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched =
      dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  ta::job_spec spec;
  ta::topology topo;
  std::int64_t param_count = 0;
  std::string dir;
  caf::actor coordinator;
  caf::actor heard;

  fixture() {
    // Fakes the test does not stop outlive it; nothing waits for them.
    sys.await_actors_before_shutdown(false);
    told.clear();
    said.clear();
    statuses.clear();
    stall_spawns = false;
    stalled = 0;
    spec.name = "supervised";
    spec.workers = 2;
    spec.partitions = 2;
    spec.shards = 1;
    spec.epochs = 2;
    spec.steps_per_epoch = 4;
    spec.batch = 8;
    spec.snapshot_every = 2;
    spec.inputs = 3;
    spec.outputs = 2;
    spec.test = {"test.idx"};
    troupe::devices::nn::layer_spec dense;
    dense.kind = troupe::devices::nn::layer_kind::dense;
    dense.units = 2;
    spec.layers = {dense};
    param_count = troupe::devices::nn::param_count(
        troupe::devices::nn::param_layout(spec.model_input(), spec.layers));
    dir = (std::filesystem::temp_directory_path() /
           fmt::format("troupe-supervisor-test-{}", ::getpid()))
              .string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }

  ~fixture() {
    if (coordinator)
      caf::anon_send_exit(coordinator, caf::exit_reason::user_shutdown);
    sched.run();
    std::filesystem::remove_all(dir);
  }

  caf::actor spawn(const ta::actor_id& id) {
    auto h = sys.spawn<caf::actor>(
        ta::name_of(id.kind),
        ta::spawn_args(id, spec, topo.aggregator_of_worker));
    BOOST_REQUIRE(h);
    topo.names[h->address()] = ta::to_string(id);
    return *h;
  }

  // Spawns the fakes (on `nodes`, by placement, when given: then through
  // fake node managers) and the coordinator.
  void launch(std::vector<std::string> nodes = {},
              std::map<std::string, std::string> placement = {}) {
    topo.aggregator_of_worker = {0, 0};
    topo.data_shard_of_worker = {0, 0};
    topo.node_names = nodes.empty() ? std::vector<std::string>{"local"} : nodes;
    topo.nodes = static_cast<std::int64_t>(topo.node_names.size());
    for (const auto& n : nodes)
      topo.managers.push_back(sys.spawn(fake_manager, n));
    topo.job_id = "job-1";
    using ta::role;
    topo.data_shards.push_back(spawn({role::data_shard, 0}));
    for (std::int32_t i = 0; i < 2; ++i)
      topo.param_shards.push_back(spawn({role::param_shard, i}));
    topo.aggregators.push_back(spawn({role::aggregator, 0}));
    for (std::int32_t i = 0; i < 2; ++i)
      topo.workers.push_back(spawn({role::worker, i}));
    if (!spec.test.empty())
      topo.evaluator = spawn({role::evaluator, 0});
    for (const auto& [addr, name] : topo.names)
      topo.placement[name] =
          placement.count(name) > 0 ? placement[name] : topo.node_names[0];
    heard = sys.spawn(listener, 0);
    ta::snapshot_options snap;
    snap.dir = dir;
    snap.keep = true;
    snap.job = "fingerprint";
    snap.own_thread = false;
    auto c = sys.spawn<caf::actor>("coordinator",
                                   caf::make_message(spec, heard, topo, snap));
    BOOST_REQUIRE(c);
    coordinator = *c;
    sched.run();
  }

  // launch(), and ready().
  void start(std::vector<std::string> nodes = {},
             std::map<std::string, std::string> placement = {}) {
    launch(std::move(nodes), std::move(placement));
    ready();
  }

  // Every worker and the evaluator says it is ready.
  void ready() {
    for (std::int32_t r = 0; r < 2; ++r)
      caf::anon_send(coordinator, ta::ready_atom::value, std::string("worker"),
                     r);
    caf::anon_send(coordinator, ta::ready_atom::value, std::string("evaluator"),
                   std::int32_t{0});
    sched.run();
  }

  // Every param shard's snapshot of `version`, as the shards send them.
  void snapshot(std::int64_t version) {
    for (std::int32_t s = 0; s < 2; ++s) {
      ta::shard_state_msg m;
      m.shard = s;
      m.version = version;
      const auto lo = spec.shard_begin(s, param_count);
      const auto hi = spec.shard_begin(s + 1, param_count);
      m.params = troupe::devices::tensor::zeros({hi - lo});
      caf::anon_send(coordinator, ta::snapshot_atom::value, std::move(m));
    }
    sched.run();
  }

  // Both workers report `steps` done, by their incarnations.
  void progress(std::int64_t steps, std::vector<std::int64_t> inc = {0, 0}) {
    for (std::int32_t r = 0; r < 2; ++r) {
      ta::progress_msg p;
      p.worker = r;
      p.incarnation = inc[static_cast<std::size_t>(r)];
      p.steps_done = steps;
      caf::anon_send(coordinator, p);
    }
    sched.run();
  }

  // A failure, as a crash or a lost connection ends an actor.
  void kill(const caf::actor& a,
            caf::exit_reason why = caf::exit_reason::kill) {
    caf::anon_send_exit(a, why);
  }

  // `troupe kill TARGET`: the coordinator's answer.
  std::string kill(const std::string& target) {
    auto answer = std::make_shared<std::string>("no answer");
    sys.spawn(
        [=](caf::event_based_actor* self, int) {
          self->request(coordinator, caf::infinite, ta::kill_atom::value,
                        target)
              .then([=](const std::string& s) { *answer = s; });
        },
        0);
    sched.run();
    return *answer;
  }

  bool was_told(const std::string& line) const {
    return std::find(told.begin(), told.end(), line) != told.end();
  }
  // The lines `prefix` starts, in order.
  std::vector<std::string> told_to(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& t : told)
      if (t.rfind(prefix, 0) == 0)
        out.push_back(t.substr(prefix.size()));
    return out;
  }
  bool heard_said(const std::string& part) const {
    return std::any_of(said.begin(), said.end(), [&](const std::string& s) {
      return s.find(part) != std::string::npos;
    });
  }
  // The first line `prefix` starts ("" when none).
  std::string first_told(const std::string& prefix) const {
    const auto t = told_to(prefix);
    return t.empty() ? "" : t.front();
  }
  std::string all_said() const {
    return fmt::format("{}", fmt::join(said, "\n"));
  }
  std::string all_told() const {
    return fmt::format("{}", fmt::join(told, "\n"));
  }
};

using lines = std::vector<std::string>;

} // namespace

BOOST_FIXTURE_TEST_SUITE(supervision, fixture)

BOOST_AUTO_TEST_CASE(
    training_starts_once_every_worker_and_the_evaluator_is_ready) {
  launch();
  caf::anon_send(coordinator, ta::ready_atom::value, std::string("worker"),
                 std::int32_t{0});
  caf::anon_send(coordinator, ta::ready_atom::value, std::string("evaluator"),
                 std::int32_t{0});
  sched.run();
  BOOST_TEST(told_to("worker:0/0 ") == lines{"wired"}, all_told());
  caf::anon_send(coordinator, ta::ready_atom::value, std::string("worker"),
                 std::int32_t{1});
  sched.run();
  BOOST_TEST(told_to("worker:0/0 ") == (lines{"wired", "start"}), all_told());
  BOOST_TEST(told_to("worker:1/0 ") == (lines{"wired", "start"}), all_told());
  BOOST_TEST(heard_said("info: training: 2 worker(s), 2 param shard(s), 1 "
                        "data shard(s) on 1 node(s), mode sync, 8 steps"),
             all_said());
}

BOOST_AUTO_TEST_CASE(a_failure_during_start_up_ends_the_job) {
  launch();
  kill(topo.workers[1]);
  sched.run();
  BOOST_TEST(said.size() == 1u, all_said());
  BOOST_TEST(heard_said("failed: worker:1 on node local stopped during "
                        "start-up: "),
             all_said());
  BOOST_TEST(told_to("worker:1/1").empty()); // nothing restarts then
}

BOOST_AUTO_TEST_CASE(start_up_is_bounded_and_names_who_is_not_ready) {
  spec.test.clear(); // no evaluator
  launch();
  caf::anon_send(coordinator, ta::ready_atom::value, std::string("worker"),
                 std::int32_t{0});
  sched.run();
  BOOST_TEST(said.empty(), all_said());
  // 60 s pass on the test clock.
  BOOST_TEST(sched.trigger_timeouts() >= 1u);
  sched.run();
  BOOST_TEST(said == lines{"failed: not ready 60 s after start-up: worker:1 "
                           "on local"},
             all_said());
}

BOOST_AUTO_TEST_CASE(a_killed_param_shard_is_restored_and_the_workers_replay) {
  start();
  snapshot(2);
  told.clear();
  kill(topo.param_shards[1]);
  sched.run();
  BOOST_TEST(heard_said("failed event: param_shard:1 on node local failed ("),
             all_said());
  // Its first wiring comes after its state: the new incarnation is
  // restored from the snapshot before anything else reaches it.
  BOOST_TEST(told_to("param_shard:1/1 ") == (lines{"restore v2", "wired"}),
             all_told());
  BOOST_TEST(told_to("param_shard:0/0 ").empty(), all_told());
  // Every worker is wired to it, then replays the steps since.
  for (auto w : {"worker:0/0 ", "worker:1/0 "})
    BOOST_TEST(told_to(w) == (lines{"wired", "replay param_shard:1 from 2"}),
               all_told());
  BOOST_TEST(heard_said("info: param_shard:1 restored from version 2; the "
                        "workers replay the steps since"));
  // The listener was told the status at the start and after the failure,
  // with the restart counted against the actor.
  BOOST_REQUIRE(statuses.size() >= 2u);
  BOOST_TEST(statuses.front().state == "training");
  BOOST_TEST(statuses.front().restarts.empty());
  BOOST_TEST(statuses.back().restarts.at("param_shard:1") == 1);
  BOOST_TEST(statuses.back().restarts.count("param_shard:0") == 0u);
  BOOST_TEST(!heard_said("rolling"));
}

BOOST_AUTO_TEST_CASE(
    a_restarted_worker_redoes_the_oldest_step_a_shard_waits_for) {
  start();
  caf::anon_send(topo.param_shards[0], ta::version_atom::value,
                 std::int64_t{3});
  caf::anon_send(topo.param_shards[1], ta::version_atom::value,
                 std::int64_t{2});
  sched.run();
  told.clear();
  kill(topo.workers[0]);
  sched.run();
  // Told its step once both shards answered, then wired; once its
  // aggregator relays to it, each shard sends it that version and
  // snapshots at once (the worker kept no gradients from before).
  BOOST_TEST(told_to("worker:0/1 ") == (lines{"recover 2", "wired"}),
             all_told());
  BOOST_TEST(told_to("aggregator:0/0 ") == lines{"wired"}, all_told());
  for (auto shard : {"param_shard:0/0 ", "param_shard:1/0 "})
    BOOST_TEST(told_to(shard) == (lines{"fetch worker:0 2", "snapshot"}),
               all_told());
  BOOST_TEST(told_to("worker:1/").empty(), all_told()); // left alone
}

BOOST_AUTO_TEST_CASE(one_for_all_restarts_every_actor_of_the_role) {
  spec.strategy = "one_for_all";
  start();
  told.clear();
  kill(topo.workers[1]);
  sched.run();
  BOOST_TEST(first_told("worker:0/1 ") == "recover 0", all_told());
  BOOST_TEST(first_told("worker:1/1 ") == "recover 0", all_told());
  BOOST_TEST(told_to("param_shard:0/1").empty());
}

BOOST_AUTO_TEST_CASE(one_for_all_restarts_every_param_shard_however_many) {
  // 2 param shards, 1 data shard: the role's own count decides.
  spec.strategy = "one_for_all";
  start();
  snapshot(2);
  told.clear();
  kill(topo.param_shards[0]);
  sched.run();
  BOOST_TEST(first_told("param_shard:0/1 ") == "restore v2", all_told());
  BOOST_TEST(first_told("param_shard:1/1 ") == "restore v2", all_told());
  BOOST_TEST(told_to("worker:0/1").empty(), all_told()); // another role
}

BOOST_AUTO_TEST_CASE(rest_for_one_restarts_it_and_the_higher_indices) {
  spec.strategy = "rest_for_one";
  start();
  told.clear();
  kill(topo.workers[1]);
  sched.run();
  BOOST_TEST(first_told("worker:1/1 ") == "recover 0", all_told());
  BOOST_TEST(told_to("worker:0/1").empty(), all_told());
  // Once that recovery is over (a step done since), worker:0 fails: it
  // and worker:1 restart (the shards are still at version 0).
  progress(1, {0, 1});
  BOOST_TEST(heard_said("recovered event: worker:1 recovered: "), all_said());
  told.clear();
  kill(topo.workers[0]);
  sched.run();
  BOOST_TEST(first_told("worker:0/1 ") == "recover 0", all_told());
  BOOST_TEST(first_told("worker:1/2 ") == "recover 0", all_told());
  BOOST_TEST(!heard_said("rolling"), all_said());
}

BOOST_AUTO_TEST_CASE(a_failure_during_a_recovery_rolls_the_job_back) {
  start();
  snapshot(2);
  progress(3);
  kill(topo.workers[0]);
  sched.run();
  BOOST_TEST(first_told("worker:0/1 ") == "recover 0", all_told());
  // The recovery is over only when the slowest worker gets past step 3.
  kill(topo.param_shards[0]);
  sched.run();
  BOOST_TEST(heard_said("failed event: param_shard:0 on node local failed ("),
             all_said());
  BOOST_TEST(heard_said(") during a recovery: rolling the job back to its "
                        "newest checkpoint"),
             all_said());
  // Every training actor is spawned again and goes on from step 2.
  BOOST_TEST(first_told("param_shard:0/1 ") == "restore v2", all_told());
  BOOST_TEST(first_told("param_shard:1/1 ") == "restore v2", all_told());
  BOOST_TEST(told_to("worker:0/2 ") == (lines{"wired", "recover 2"}),
             all_told());
  BOOST_TEST(told_to("worker:1/1 ") == (lines{"wired", "recover 2"}),
             all_told());
  BOOST_TEST(heard_said("resumed event: the job goes on from step 2"));
}

BOOST_AUTO_TEST_CASE(a_recovery_lasts_until_its_respawns_and_hooks_are_done) {
  start({"a"});
  snapshot(2);
  progress(3);
  // worker:0 fails; its node is slow to spawn the new one. Reports of
  // steps done before (in flight then) end no recovery that has not begun.
  stall_spawns = true;
  kill(topo.workers[0]);
  sched.run();
  BOOST_REQUIRE(stalled == 1u);
  progress(4);
  progress(5);
  BOOST_TEST(!heard_said("recovered event"), all_said());
  // So a failure now is one during a recovery: the job rolls back.
  kill(topo.param_shards[0]);
  sched.run();
  BOOST_TEST(heard_said("param_shard:0 on node a failed ("), all_said());
  BOOST_TEST(heard_said(") during a recovery: rolling the job back"),
             all_said());
  stall_spawns = false;
  caf::anon_send(topo.managers[0], release_atom::value);
  sched.run();
  BOOST_TEST(told_to("worker:0/2 ") == (lines{"wired", "recover 2"}),
             all_told());
  BOOST_TEST(told_to("worker:0/1 ").empty(), all_told()); // stale: stopped
  // A rollback restarts every worker, and reports of an older incarnation
  // count for nothing: the first step done after it ends it.
  progress(3, {1, 0});
  BOOST_TEST(!heard_said("recovered event"), all_said());
  progress(3, {2, 1});
  BOOST_TEST(heard_said("recovered event: the rollback recovered"), all_said());
}

BOOST_AUTO_TEST_CASE(a_restart_is_recovered_one_step_after_its_hooks_are_done) {
  start();
  snapshot(2);
  progress(3);
  kill(topo.workers[0]);
  sched.run(); // respawned, hooks answered
  // The first report after may have been sent before: it settles the step
  // to get past.
  progress(3, {1, 0});
  BOOST_TEST(!heard_said("recovered event"), all_said());
  progress(4, {1, 0});
  BOOST_TEST(heard_said("recovered event: worker:0 recovered: "), all_said());
}

BOOST_AUTO_TEST_CASE(overlapping_failures_drop_the_first_recoverys_answers) {
  start();
  snapshot(2);
  told.clear();
  // Both die before the coordinator hears of either. The worker's recovery
  // asks the shards for their versions; the shard's failure rolls the job
  // back before they answer, and their answers (an older generation) are
  // dropped: the first new worker is told nothing, the second step 2 once.
  kill(topo.workers[0]);
  kill(topo.param_shards[1]);
  sched.run();
  BOOST_TEST(heard_said("rolling the job back"), all_said());
  BOOST_TEST(told_to("worker:0/1 ").empty(), all_told());
  BOOST_TEST(told_to("worker:0/2 ") == (lines{"wired", "recover 2"}),
             all_told());
  BOOST_TEST(told_to("param_shard:1/1 ") == (lines{"restore v2", "wired"}),
             all_told());
  // After the rollback a recovery is timed, and a new failure restarts
  // alone again once training moved past it.
  progress(3, {2, 1});
  told.clear();
  BOOST_TEST(kill("worker:1") == "");
  sched.run();
  BOOST_TEST(first_told("worker:1/2 ") == "recover 2", all_told());
}

BOOST_AUTO_TEST_CASE(too_many_restarts_of_a_role_end_the_job_naming_it) {
  spec.max_restarts = 2;
  start();
  snapshot(2);
  kill(topo.workers[1]);
  sched.run();
  progress(3, {0, 1}); // the first recovery is over
  BOOST_TEST(kill("worker:1") == "");
  sched.run();
  progress(4, {0, 2});
  BOOST_TEST(first_told("worker:1/2 ") == "recover 0", all_told());
  BOOST_TEST(!heard_said("failed: "), all_said());
  BOOST_TEST(kill("worker:1") == "");
  sched.run();
  BOOST_TEST(told_to("worker:1/3").empty(), all_told());
  BOOST_TEST(heard_said("failed: supervision gave up: worker:1 on node local "
                        "failed ("),
             all_said());
  BOOST_TEST(heard_said(") after 2 restart(s) of role worker within 60 s "
                        "(supervision.max_restarts = 2); last good "
                        "checkpoint: step 2 in " +
                        dir),
             all_said());
  // The job is over: nothing more is killed.
  BOOST_TEST(kill("worker:0") == "no answer");
}

BOOST_AUTO_TEST_CASE(troupe_kill_names_what_it_cannot_kill) {
  launch();
  BOOST_TEST(kill("worker:0") == "the job is starting: nothing is killed");
  ready();
  BOOST_TEST(kill("worker:7") ==
             "no actor worker:7 in this job (actors: aggregator:0, "
             "data_shard:0, evaluator, param_shard:0, param_shard:1, "
             "worker:0, worker:1)");
  BOOST_TEST(kill("node:x") ==
             "this job runs in one process: it has no node to kill");
}

BOOST_AUTO_TEST_CASE(a_node_that_stops_answering_is_lost_and_its_actors_move) {
  start({"a", "b"}, {{"worker:1", "b"}});
  snapshot(2);
  progress(3);
  told.clear();
  // A frozen node: past the heartbeat timeout CAF reports its actors
  // unreachable. One report is enough to give the node up.
  kill(topo.workers[1], caf::exit_reason::remote_link_unreachable);
  sched.run();
  BOOST_TEST(heard_said("node_lost event: node b lost: worker:1 stopped: "),
             all_said());
  BOOST_TEST(heard_said("rollback event: node b lost (worker:1 stopped: "),
             all_said());
  BOOST_TEST(told_to("node a forgets a peer").size() == 1u, all_told());
  // Every training actor is spawned again, on a alone, and goes on from
  // the checkpoint; the evaluator (on a) stays.
  BOOST_TEST(told_to("node a spawns ") ==
                 (lines{"data_shard", "param_shard", "param_shard",
                        "aggregator", "worker", "worker"}),
             all_told());
  BOOST_TEST(told_to("node b ").empty(), all_told());
  BOOST_TEST(told_to("worker:1/1 ") == (lines{"wired", "recover 2"}),
             all_told());
  BOOST_TEST(heard_said("resumed event: the job goes on from step 2"));
  BOOST_TEST(kill("node:b") == "node b was lost already");
  BOOST_TEST(kill("node:a") == "");
  BOOST_TEST(was_told("node a fault kill"), all_told());
  BOOST_TEST(heard_said("fault event: fault injected: kill node a"),
             all_said());
}

BOOST_AUTO_TEST_CASE(a_node_whose_manager_stops_is_lost) {
  start({"a", "b"}, {{"worker:1", "b"}, {"param_shard:1", "b"}});
  snapshot(2);
  told.clear();
  kill(topo.managers[1]);
  sched.run();
  BOOST_TEST(heard_said("rollback event: node b lost (its node manager "
                        "stopped: "),
             all_said());
  BOOST_TEST(told_to("param_shard:1/1 ") == (lines{"restore v2", "wired"}),
             all_told());
  BOOST_TEST(told_to("node b ").empty(), all_told());
}

BOOST_AUTO_TEST_CASE(losing_the_last_node_ends_the_job) {
  start({"a"});
  kill(topo.managers[0]);
  sched.run();
  BOOST_TEST(heard_said("failed: node a was lost (its node manager stopped: "),
             all_said());
  BOOST_TEST(heard_said("and it was the last node of the job"), all_said());
}

BOOST_AUTO_TEST_SUITE_END()

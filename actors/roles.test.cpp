// Role names and actor ids in one place: every role's name round-trips,
// bad names are named, spawn arguments have each role's shape, and a
// checkpoint's fingerprint ignores how a job is run but not what it
// computes.
#include "actors/roles.hpp"
#include "actors/stages.hpp"

#include "actors/messages.hpp"
#include "actors/run.hpp"
#include "runtime/config.hpp"

#include <caf/all.hpp>

#include <boost/test/unit_test.hpp>

#include <string>

namespace ta = troupe::actors;

namespace {

std::string parse_error(const std::string& text) {
  try {
    ta::parse_actor_id(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_SUITE(roles)

BOOST_AUTO_TEST_CASE(names_and_ids_round_trip) {
  for (auto r : ta::all_roles) {
    BOOST_TEST((ta::role_named(ta::name_of(r)) == r));
    const ta::actor_id a{r, r == ta::role::evaluator ? 0 : 7};
    BOOST_TEST((ta::parse_actor_id(ta::to_string(a)) == a));
  }
  BOOST_TEST(ta::to_string({ta::role::worker, 3}) == "worker:3");
  BOOST_TEST(ta::to_string({ta::role::evaluator, 0}) == "evaluator");
  BOOST_TEST((ta::parse_actor_id("evaluator:0") ==
              ta::actor_id{ta::role::evaluator, 0}));
  BOOST_TEST(!ta::role_named("coordinator"));
  BOOST_TEST(
      (ta::actor_id{ta::role::worker, 1} < ta::actor_id{ta::role::worker, 2}));
}

BOOST_AUTO_TEST_CASE(bad_actor_names_say_what_is_wrong) {
  BOOST_TEST(contains(parse_error("wrker:1"), "'wrker' is not a role"));
  BOOST_TEST(contains(parse_error("worker"), "give an index, as in worker:0"));
  BOOST_TEST(contains(parse_error("worker:x"), "'x' is not an index"));
  BOOST_TEST(contains(parse_error("worker:-1"), "'-1' is not an index"));
  BOOST_TEST(contains(parse_error("worker:1x"), "'1x' is not an index"));
  BOOST_TEST(contains(parse_error("evaluator:1"), "one evaluator"));
}

BOOST_AUTO_TEST_CASE(spawn_arguments_have_each_role_s_shape) {
  ta::job_spec spec;
  spec.workers = 4;
  spec.shards = 2;
  spec.partitions = 2;
  spec.batch = 64;
  spec.input_shape = {4};
  spec.inputs = 4;
  spec.layers = {{troupe::devices::nn::layer_kind::dense, 3}};
  // One data stage: stage:0 and stage:1, one per data shard.
  spec.stages = {{"roles_test_stage", {}}};
  if (!troupe::stages::has_data_stage("roles_test_stage"))
    troupe::stages::register_data_stage(
        "roles_test_stage",
        [](const troupe::stages::params&, const troupe::stages::sample_info&) {
          return std::unique_ptr<troupe::stages::data_stage>();
        });
  const std::vector<std::int32_t> aggregator_of_worker{0, 0, 1, 1};
  using i32 = std::int32_t;
  auto agg =
      ta::spawn_args({ta::role::aggregator, 1}, spec, aggregator_of_worker);
  BOOST_REQUIRE((agg.match_elements<ta::job_spec, i32, i32, i32>()));
  BOOST_TEST(agg.get_as<i32>(1) == 1);
  BOOST_TEST(agg.get_as<i32>(2) == 2); // ranks [2, 4)
  BOOST_TEST(agg.get_as<i32>(3) == 4);
  BOOST_TEST((ta::spawn_args({ta::role::evaluator, 0}, spec, {})
                  .match_elements<ta::job_spec>()));
  for (auto r :
       {ta::role::data_shard, ta::role::param_shard, ta::role::worker}) {
    auto m = ta::spawn_args({r, 1}, spec, aggregator_of_worker);
    BOOST_REQUIRE((m.match_elements<ta::job_spec, i32>()));
    BOOST_TEST(m.get_as<i32>(1) == 1);
  }
  // What a node checks accepts what the driver sends, for every role.
  for (auto r : ta::all_roles) {
    auto m = ta::spawn_args({r, r == ta::role::evaluator ? 0 : 1}, spec,
                            aggregator_of_worker);
    BOOST_TEST(ta::check_spawn_request(ta::name_of(r), m, "", 0) == "",
               ta::name_of(r));
  }
  BOOST_TEST(
      ta::check_spawn_request("coordinator", caf::make_message(spec), "", 0) ==
      "'coordinator' is not a role of a job");
  // A stage past the job's, and one of a type this process lacks.
  BOOST_TEST(ta::check_spawn_request("stage", caf::make_message(spec, i32{2}),
                                     "", 0) ==
             "stage index 2 is outside the job's 0..1");
  auto other = spec;
  other.stages = {{"not_here", {}}};
  BOOST_TEST(ta::check_spawn_request("stage", caf::make_message(other, i32{0}),
                                     "", 0) ==
             "data stage \"not_here\" is not registered on this node (start "
             "`troupe node` with --plugin LIB.so, the library that registers "
             "it)");
}

BOOST_AUTO_TEST_CASE(a_fingerprint_ignores_how_a_job_runs) {
  caf::actor_system_config cfg;
  ta::register_roles(cfg);
  caf::actor_system sys{cfg};
  ta::job_spec base;
  base.workers = 2;
  base.batch = 64;
  base.optimizer.lr = 0.01f;
  const auto fp = ta::job_fingerprint(sys, base);
  // How it runs: the same checkpoint resumes.
  auto run = base;
  run.detached_compute = true;
  run.threads = 3;
  run.epochs = 9;
  run.strategy = "one_for_all";
  run.slow_worker = 1;
  run.slow_ms = 50;
  run.snapshot_every = 7;
  run.heartbeat_timeout_s = 9;
  run.local_nodes = 3;
  BOOST_TEST(ta::job_fingerprint(sys, run) == fp);
  // What it computes: refused.
  for (int k = 0; k < 4; ++k) {
    auto other = base;
    if (k == 0)
      other.optimizer.lr = 0.02f;
    else if (k == 1)
      other.seed += 1;
    else if (k == 2)
      other.batch = 128;
    else
      other.mode = "async";
    BOOST_TEST(ta::job_fingerprint(sys, other) != fp, "change " << k);
  }
}

BOOST_AUTO_TEST_SUITE_END()

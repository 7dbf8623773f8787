// Placement and re-homing as pure functions of the spec and the nodes: GPU
// workers get their nodes' GPUs in turn, and a lost node's GPU worker moves
// to a node with a GPU (or, with cluster.device "any", to a CPU).
#include "actors/placement.hpp"

#include "runtime/config.hpp"

#include <boost/test/unit_test.hpp>

namespace ta = troupe::actors;

namespace {

ta::job_spec spec_with(const std::string& device, std::int64_t workers) {
  ta::job_spec s;
  s.device = device;
  s.workers = workers;
  s.shards = 1;
  s.partitions = 1;
  return s;
}

const std::vector<ta::node_slot> mixed{{"a", {"cpu"}},
                                       {"b", {"cpu", "cuda:0", "cuda:1"}},
                                       {"c", {"cpu", "cuda:0"}}};

} // namespace

BOOST_AUTO_TEST_SUITE(placement)

BOOST_AUTO_TEST_CASE(gpu_workers_take_their_nodes_gpus_in_turn) {
  auto cuda = ta::plan_placement(spec_with("cuda", 6), mixed);
  BOOST_TEST(cuda.workers == (std::vector<std::int32_t>{1, 1, 1, 2, 2, 2}));
  BOOST_TEST(cuda.worker_devices ==
             (std::vector<std::string>{"cuda:0", "cuda:1", "cuda:0", "cuda:0",
                                       "cuda:0", "cuda:0"}));
  auto any = ta::plan_placement(spec_with("any", 3), mixed);
  BOOST_TEST(any.workers == (std::vector<std::int32_t>{0, 1, 2}));
  BOOST_TEST(any.worker_devices ==
             (std::vector<std::string>{"cpu", "cuda:0", "cuda:0"}));
  auto cpu = ta::plan_placement(spec_with("cpu", 3), mixed);
  BOOST_TEST(cpu.worker_devices ==
             (std::vector<std::string>{"cpu", "cpu", "cpu"}));
}

BOOST_AUTO_TEST_CASE(a_gpu_job_without_gpus_names_what_the_nodes_offer) {
  const std::vector<ta::node_slot> cpus{{"a", {"cpu"}}, {"b", {"cpu"}}};
  try {
    ta::plan_placement(spec_with("cuda", 2), cpus);
    BOOST_FAIL("placed GPU workers without a GPU");
  } catch (const troupe::runtime::config_error& e) {
    BOOST_TEST(std::string(e.what()) ==
               "cluster.device: no node has a \"cuda\" device (nodes offer "
               "a: cpu; b: cpu)");
  }
}

BOOST_AUTO_TEST_CASE(a_lost_nodes_gpu_worker_moves_to_a_gpu) {
  auto spec = spec_with("cuda", 3);
  spec.worker_devices = {"cuda:0", "cuda:1", "cuda:0"};
  // worker:0 and worker:1 on b, worker:2 on c; b is lost.
  std::map<std::string, std::string> placement{{"worker:0", "b"},
                                               {"worker:1", "b"},
                                               {"worker:2", "c"},
                                               {"param_shard:0", "a"},
                                               {"data_shard:0", "a"}};
  auto home = ta::rehome("worker", 0, spec, mixed, {"b"}, placement);
  BOOST_REQUIRE(home.node.has_value());
  BOOST_TEST(*home.node == 2u); // c, though a has fewer actors
  BOOST_TEST(home.device == "cuda:0");
  // A CPU role goes to the least loaded survivor, with no device.
  auto shard = ta::rehome("param_shard", 1, spec, mixed, {"b"}, placement);
  BOOST_TEST(*shard.node == 2u);
  BOOST_TEST(shard.device.empty());
  // No GPU left: "cuda" cannot go on, "any" goes on on a CPU.
  auto none = ta::rehome("worker", 2, spec, mixed, {"b", "c"}, placement);
  BOOST_TEST(!none.node.has_value());
  BOOST_TEST(none.why == "no surviving node offers a GPU (lost: b, c)");
  spec.device = "any";
  auto cpu = ta::rehome("worker", 2, spec, mixed, {"b", "c"}, placement);
  BOOST_REQUIRE(cpu.node.has_value());
  BOOST_TEST(*cpu.node == 0u);
  BOOST_TEST(cpu.device == "cpu");
}

BOOST_AUTO_TEST_CASE(a_moved_gpu_worker_takes_the_least_used_gpu) {
  auto spec = spec_with("cuda", 3);
  spec.worker_devices = {"cuda:0", "cuda:0", "cuda:0"};
  std::map<std::string, std::string> placement{
      {"worker:0", "b"}, {"worker:1", "c"}, {"worker:2", "c"}};
  // worker:1 and worker:2 are on c; worker:0 already uses b's cuda:0.
  auto home = ta::rehome("worker", 2, spec, mixed, {"c"}, placement);
  BOOST_REQUIRE(home.node.has_value());
  BOOST_TEST(*home.node == 1u);
  BOOST_TEST(home.device == "cuda:1");
}

BOOST_AUTO_TEST_SUITE_END()

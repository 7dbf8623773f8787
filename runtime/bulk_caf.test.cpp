// Data-plane frames delivered into an actor system: a connection feeds
// only the actors filed under the job it was opened for.
#include "runtime/bulk_caf.hpp"
#include "runtime/bulk.hpp"

#include <caf/all.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <thread>

namespace rt = troupe::runtime;
namespace dv = troupe::devices;

BOOST_AUTO_TEST_SUITE(bulk_caf)

BOOST_AUTO_TEST_CASE(frames_reach_only_actors_of_their_connection_s_job) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto got = std::make_shared<std::atomic<int>>(0);
  // (An argument, as CAF 0.17 function actors without one trip UBSan.)
  auto target = sys.spawn(
      [got](caf::event_based_actor*, int) -> caf::behavior {
        return {[got](std::uint32_t kind) { *got += static_cast<int>(kind); }};
      },
      0);
  sys.registry().put(target.id(),
                     caf::actor_cast<caf::strong_actor_ptr>(target));
  rt::set_bulk_decoder([](rt::bulk_header&& h, dv::tensor&&) {
    return caf::make_message(h.kind);
  });
  auto plane = rt::start_bulk_plane(sys, "127.0.0.1", 5, {}, "test node");
  const auto job_a = rt::job_tag("job-a-1234");
  const auto job_b = rt::job_tag("job-b-5678");
  BOOST_TEST(job_a != job_b);
  BOOST_TEST(job_a == rt::job_tag("job-a-1234"));
  rt::bind_to_job(target.id(), job_a);

  rt::bulk_plane sender("127.0.0.1",
                        [](std::uint64_t, rt::bulk_header&&, dv::tensor&&) {});
  sender.set_peer("node", plane->address());
  rt::bulk_header h;
  h.dest = target.id();
  // Another job's connection: dropped. The same actor's own job: kind 7.
  h.kind = 1000;
  BOOST_TEST(sender.send("node", job_b, h, dv::tensor::zeros({2})));
  h.kind = 7;
  BOOST_TEST(sender.send("node", job_a, h, dv::tensor::zeros({2})));
  // Once unfiled (its job stopped), nothing reaches it.
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (plane->frames_received() < 2 &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  BOOST_REQUIRE(plane->frames_received() == 2);
  rt::unbind_from_job(target.id());
  h.kind = 100;
  BOOST_TEST(sender.send("node", job_a, h, dv::tensor::zeros({2})));
  while (plane->frames_received() < 3 &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  BOOST_REQUIRE(plane->frames_received() == 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  BOOST_TEST(got->load() == 7);
  // An actor filed under no job sends nothing on the plane (CAF instead).
  BOOST_TEST(
      !rt::bulk_send(target.id(), target, 1, {}, dv::tensor::zeros({1})));
  rt::stop_bulk_plane(plane);
  rt::set_bulk_decoder({});
  sys.registry().erase(target.id());
  caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()

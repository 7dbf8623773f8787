#include "runtime/exceptions.hpp"

#include "devices/backends.hpp"

#include <caf/all.hpp>

#include <boost/test/unit_test.hpp>

#include <string>

BOOST_AUTO_TEST_SUITE(exceptions)

BOOST_AUTO_TEST_CASE(an_actors_device_error_keeps_its_text) {
  // A GPU helper's device_error, thrown in a handler, ends the actor with
  // an error that names the CUDA call, as its monitor sees it.
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  // (An argument: CAF 0.17 spawning a function of no arguments dereferences
  // a null tuple, which UBSan reports.)
  auto helper = sys.spawn(
      [](caf::event_based_actor* self, int) -> caf::behavior {
        self->set_exception_handler(troupe::runtime::exception_to_error);
        return {[](int) {
          throw troupe::devices::device_error(
              "CUDA: cudaMalloc(&p, n) failed at cuda_device.cpp:42: "
              "cudaErrorMemoryAllocation: out of memory");
        }};
      },
      0);
  caf::scoped_actor self{sys};
  self->monitor(helper);
  self->send(helper, 1);
  std::string why;
  self->receive([&](caf::down_msg& dm) { why = sys.render(dm.reason); });
  BOOST_TEST(why.find("runtime_error") != std::string::npos, why);
  BOOST_TEST(why.find("cudaMalloc(&p, n) failed at cuda_device.cpp:42: "
                      "cudaErrorMemoryAllocation: out of memory") !=
                 std::string::npos,
             why);
}

BOOST_AUTO_TEST_SUITE_END()

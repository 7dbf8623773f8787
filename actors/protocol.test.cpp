// The typed protocol (protocol.hpp): the checks that make a wrong send or
// a wrong behavior fail to compile are themselves checked here, at compile
// time, on the real inboxes; and a typed request to a real role gets the
// answer its inbox declares.
#include "actors/protocol.hpp"

#include <boost/test/unit_test.hpp>

namespace ta = troupe::actors;

namespace {

using std::int32_t;
using std::int64_t;

// What a worker sends its data shard.
static_assert(ta::accepts<ta::data_shard_inbox, ta::credit_atom, int32_t,
                          int64_t, int64_t, caf::actor>);
// An int where the inbox says int64: no handler would match at run time.
static_assert(!ta::accepts<ta::data_shard_inbox, ta::credit_atom, int32_t, int,
                           int64_t, caf::actor>);
// The old credit (no step taken): refused.
static_assert(!ta::accepts<ta::data_shard_inbox, ta::credit_atom, int32_t,
                           int64_t, caf::actor>);
// A message for another role.
static_assert(!ta::accepts<ta::data_shard_inbox, ta::batch_msg>);
static_assert(ta::accepts<ta::worker_inbox, ta::batch_msg>);
static_assert(!ta::accepts<ta::worker_inbox, ta::grad_msg>);
static_assert(ta::accepts<ta::aggregator_inbox, ta::grad_msg>);
static_assert(ta::accepts<ta::param_shard_inbox, ta::grad_msg>);
// Requests: the message is checked whatever the answer.
static_assert(ta::accepts<ta::param_shard_inbox, ta::version_atom>);
static_assert(ta::accepts<ta::param_shard_inbox, ta::version_atom, int32_t>);
static_assert(!ta::accepts<ta::param_shard_inbox, ta::version_atom, int64_t>);

// behavior_of's checks, on handlers as the roles write them.
using tiny = ta::inbox<ta::takes<ta::start_atom>,
                       ta::answers<int64_t, ta::version_atom, int32_t>>;
auto on_start = [](ta::start_atom) {};
auto on_version = [](ta::version_atom, int32_t) -> int64_t { return 0; };
auto on_version_int = [](ta::version_atom, int) -> int { return 0; };
auto on_version_ref = [](ta::version_atom, const int32_t&) -> int64_t {
  return 0;
};
static_assert(std::is_same_v<ta::detail::handled<decltype(on_version_ref)>,
                             ta::answers<int64_t, ta::version_atom, int32_t>>,
              "references and const are the element type");
static_assert(ta::detail::has_message<
              tiny, ta::detail::handled<decltype(on_version)>>::value);
static_assert(!ta::detail::has_message<
                  tiny, ta::detail::handled<decltype(on_version_int)>>::value,
              "answering int where the inbox says int64 is refused");
static_assert(ta::detail::has_message<
              tiny, ta::detail::handled<decltype(on_start)>>::value);
static_assert(
    !ta::detail::distinct<ta::detail::handled<decltype(on_start)>,
                          ta::detail::handled<decltype(on_start)>>::value,
    "two handlers for one message are refused");
static_assert(ta::detail::size_of<tiny>::value == 2);

} // namespace

BOOST_AUTO_TEST_SUITE(protocol)

BOOST_AUTO_TEST_CASE(a_behavior_of_its_inbox_answers_as_declared) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto a = sys.spawn(
      [](caf::event_based_actor*, int) {
        return ta::behavior_of<tiny>(
            [](ta::start_atom) {},
            [](ta::version_atom, int32_t w) -> int64_t { return 40 + w; });
      },
      0);
  caf::scoped_actor self{sys};
  const ta::handle<tiny> h{a};
  int64_t got = -1;
  ta::ask(self.ptr(), h, std::chrono::seconds(30), ta::version_atom::value,
          int32_t{2})
      .receive([&](int64_t v) { got = v; },
               [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
  BOOST_TEST(got == 42);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()

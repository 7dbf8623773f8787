#pragma once
/// \file The protocol between a job's actors as types: each role's inbox
/// (every message it takes, and what it answers) declared once, handles
/// that know the inbox of the actor they name, and the three ways to use
/// them, all checked by the compiler:
/// - `tell(self, to, xs...)` and `ask(self, to, timeout, xs...)` do not
///   compile unless `to`'s inbox takes (xs...), element types exact (an
///   `int` where the inbox says int64 is an error, as it would be a
///   message no handler matches at run time);
/// - `behavior_of<Inbox>(handlers...)` does not compile unless the
///   handlers are exactly the inbox: one per message, each answering what
///   the inbox says.
/// The handles wrap plain `caf::actor`s, so they cross the network and the
/// data plane as before (CAF 0.17 typed actors would not spawn by name on
/// another node; this keeps dynamic spawning and checks at compile time).
///
/// Who sends what to whom:
///
///   data_shard  --batch_msg-->                 worker (one per credit)
///   worker      --credit, resubscribe-->       data_shard
///   (with [[stage]]s, each data stage stands between: it is the data
///   shard of what it feeds and the worker of what feeds it)
///   worker      --grad_msg-->                  aggregator of its node, which
///                                              sums its workers' gradients
///   aggregator  --grad_msg-->                  param_shard (its slice); a
///                                              worker alone on its
///                                              aggregator sends it itself
///   param_shard --params_msg-->                aggregator --> its workers
///   param_shard --params_msg (epoch ends)-->   coordinator --> evaluator
///   param_shard --snapshot, applied, clip,
///                 duplicate-->                 coordinator (snapshots on to
///                                              its snapshot store)
///   worker      --ready, progress_msg-->       coordinator
///   evaluator   --ready, eval_msg-->           coordinator
///   coordinator --wire, start-->               the roles (wiring.hpp)
///   coordinator --recover, replay, fetch, prune, restore, republish,
///                 version?-->                  the roles, to bring a
///                                              restarted actor back
///                                              (supervisor.hpp and each
///                                              role's recover_* hook)
///
/// Slices for another process take the data plane (send_slices).
/// Heavy (CAF): include from .cpp files that speak the protocol.
#include "actors/messages.hpp"

#include <type_traits>
#include <utility>

namespace troupe::actors {

/// One message an inbox takes, (Ts...), and what its handler answers
/// (void: nothing).
template <class Reply, class... Ts>
struct answers {};

/// One message an inbox takes and does not answer.
template <class... Ts>
using takes = answers<void, Ts...>;

/// Every message a role takes.
template <class... Messages>
struct inbox {};

/// An inbox and more: messages a role takes from its own helpers.
template <class Inbox, class... More>
struct extend;
template <class... Ms, class... More>
struct extend<inbox<Ms...>, More...> {
  using type = inbox<Ms..., More...>;
};

using actor_list = std::vector<caf::actor>;

/// A data shard's: credits and resubscriptions from its workers; its
/// loader's data.
using data_shard_inbox = inbox<
    takes<credit_atom, std::int32_t, std::int64_t, std::int64_t, caf::actor>,
    takes<resubscribe_atom, std::int32_t, std::int64_t, std::int64_t,
          caf::actor>,
    takes<loaded_atom, dataset_ptr>>;

/// A data stage's: what feeds it (wiring); credits and resubscriptions
/// from downstream, as a data shard takes them; batches from upstream, as
/// a worker takes them.
using stage_inbox = inbox<
    takes<wire_atom, caf::actor>,
    takes<credit_atom, std::int32_t, std::int64_t, std::int64_t, caf::actor>,
    takes<resubscribe_atom, std::int32_t, std::int64_t, std::int64_t,
          caf::actor>,
    takes<batch_msg>>;
/// A param shard's: wiring and gradients; what supervision asks of it.
using param_shard_inbox =
    inbox<takes<wire_atom, actor_list, std::vector<std::int32_t>, caf::actor,
                caf::actor>,
          answers<bool, wire_atom>, // a barrier: earlier wiring is in place
          takes<grad_msg>, takes<restore_atom, shard_state_msg>,
          answers<std::int64_t, version_atom>,
          answers<std::int64_t, version_atom, std::int32_t>,
          takes<snapshot_atom>, takes<clip_atom, std::int64_t, float>,
          answers<std::int64_t, snapshot_atom, done_atom>,
          takes<fetch_atom, std::int64_t, std::int32_t, caf::actor>,
          takes<republish_atom, caf::actor>,
          takes<control_atom, std::vector<double>>>;

/// An aggregator's: wiring, its workers' gradients, the shards' parameters.
using aggregator_inbox =
    inbox<takes<wire_atom, actor_list, actor_list>, answers<bool, wire_atom>,
          takes<grad_msg>, takes<params_msg>>;

/// A worker's: wiring, batches, parameters; what supervision tells it.
using worker_inbox =
    inbox<takes<wire_atom, caf::actor, caf::actor, caf::actor, actor_list>,
          takes<recover_atom, std::int64_t>,
          takes<replay_atom, std::int32_t, std::int64_t>,
          takes<prune_atom, std::int64_t>, takes<start_atom>, takes<batch_msg>,
          takes<params_msg>>;

/// The evaluator's: wiring, its loader's data, each epoch's parameters.
using evaluator_inbox =
    inbox<takes<wire_atom, caf::actor>, takes<loaded_atom, dataset_ptr>,
          takes<params_msg>>;

/// The coordinator's: readiness and reports from the roles, snapshots and
/// the store's answers, and what `troupe status` and `troupe kill` ask.
using coordinator_inbox = inbox<
    takes<start_atom>, takes<ready_atom, std::string, std::int32_t>,
    takes<progress_msg>, takes<eval_msg>, answers<job_status, status_atom>,
    answers<job_history, history_atom>,
    answers<std::string, kill_atom, std::string>, takes<params_msg>,
    takes<clip_atom, std::int64_t, std::int32_t, std::vector<double>>,
    takes<snapshot_atom, shard_state_msg>,
    takes<snapshot_atom, failed_atom, std::int32_t, std::int64_t, std::string>,
    takes<durable_atom, std::int32_t, std::int64_t>,
    takes<snapshot_atom, done_atom, std::int64_t>,
    takes<duplicate_atom, std::int32_t, std::int32_t, std::int64_t>,
    takes<applied_atom, std::int32_t, std::int64_t>,
    takes<control_atom, std::int32_t>>;

/// The snapshot store's (see spawn_snapshot_store).
using snapshot_store_inbox =
    inbox<takes<snapshot_atom, shard_state_msg, std::int64_t, std::int64_t>,
          answers<caf::message, load_atom, std::int32_t>,
          answers<caf::message, checkpoint_atom>>;

/// An actor whose inbox is `Inbox`.
template <class Inbox>
class handle {
public:
  handle() = default;
  explicit handle(caf::actor a)
    : raw_(std::move(a)) {}
  const caf::actor& raw() const { return raw_; }
  explicit operator bool() const { return static_cast<bool>(raw_); }

private:
  caf::actor raw_;
};

/// Handles to actors that all have `Inbox`.
template <class Inbox>
std::vector<handle<Inbox>> handles_to(std::vector<caf::actor> xs) {
  std::vector<handle<Inbox>> out;
  out.reserve(xs.size());
  for (auto& x : xs)
    out.emplace_back(std::move(x));
  return out;
}

using data_shard_handle = handle<data_shard_inbox>;
using stage_handle = handle<stage_inbox>;
using param_shard_handle = handle<param_shard_inbox>;
using aggregator_handle = handle<aggregator_inbox>;
using worker_handle = handle<worker_inbox>;
using evaluator_handle = handle<evaluator_inbox>;
using coordinator_handle = handle<coordinator_inbox>;
using snapshot_store_handle = handle<snapshot_store_inbox>;

/// Typed views of a topology's actors.
inline data_shard_handle data_shard_at(const topology& t, std::size_t i) {
  return data_shard_handle{t.data_shards[i]};
}
inline param_shard_handle param_shard_at(const topology& t, std::size_t i) {
  return param_shard_handle{t.param_shards[i]};
}
inline aggregator_handle aggregator_at(const topology& t, std::size_t i) {
  return aggregator_handle{t.aggregators[i]};
}
inline worker_handle worker_at(const topology& t, std::size_t i) {
  return worker_handle{t.workers[i]};
}
inline evaluator_handle evaluator_of(const topology& t) {
  return evaluator_handle{t.evaluator};
}

namespace detail {

template <class Msg, class... Ts>
struct same_elements : std::false_type {};
template <class R, class... Us, class... Ts>
struct same_elements<answers<R, Us...>, Ts...>
  : std::is_same<caf::detail::type_list<Us...>, caf::detail::type_list<Ts...>> {
};

template <class Inbox, class... Ts>
struct takes_elements;
template <class... Ms, class... Ts>
struct takes_elements<inbox<Ms...>, Ts...>
  : std::disjunction<same_elements<Ms, Ts...>...> {};

template <class Inbox, class Msg>
struct has_message;
template <class... Ms, class Msg>
struct has_message<inbox<Ms...>, Msg>
  : std::disjunction<std::is_same<Ms, Msg>...> {};

template <class T>
using plain = std::remove_cv_t<std::remove_reference_t<T>>;

template <class R, class Args>
struct answers_of;
template <class R, class... As>
struct answers_of<R, caf::detail::type_list<As...>> {
  using type = answers<plain<R>, plain<As>...>;
};

/// The message a handler takes and what it answers, as an inbox names it.
template <class F>
using handled = typename answers_of<
    typename caf::detail::get_callable_trait<F>::result_type,
    typename caf::detail::get_callable_trait<F>::arg_types>::type;

template <class Inbox>
struct size_of;
template <class... Ms>
struct size_of<inbox<Ms...>>
  : std::integral_constant<std::size_t, sizeof...(Ms)> {};

template <class... Ms>
struct distinct : std::true_type {};
template <class M, class... Ms>
struct distinct<M, Ms...>
  : std::bool_constant<!std::disjunction_v<std::is_same<M, Ms>...> &&
                       distinct<Ms...>::value> {};

} // namespace detail

/// Whether `Inbox` takes a message of the element types Ts.
template <class Inbox, class... Ts>
constexpr bool accepts = detail::takes_elements<Inbox, Ts...>::value;

/// Sends (xs...) to `to`, which must take it.
template <class Self, class Inbox, class... Ts>
void tell(Self* self, const handle<Inbox>& to, Ts&&... xs) {
  static_assert(accepts<Inbox, detail::plain<Ts>...>,
                "the receiving role's inbox has no such message "
                "(actors/protocol.hpp)");
  self->send(to.raw(), std::forward<Ts>(xs)...);
}

/// Asks `to` (xs...), which it must take; the answer as self->request's.
template <class Self, class Inbox, class Timeout, class... Ts>
auto ask(Self* self, const handle<Inbox>& to, Timeout timeout, Ts&&... xs) {
  static_assert(accepts<Inbox, detail::plain<Ts>...>,
                "the receiving role's inbox has no such message "
                "(actors/protocol.hpp)");
  return self->request(to.raw(), timeout, std::forward<Ts>(xs)...);
}

/// The behavior of a role whose inbox is `Inbox`: one handler per message
/// of the inbox, each answering what the inbox says, and nothing else.
template <class Inbox, class... Fs>
caf::behavior behavior_of(Fs... handlers) {
  static_assert(
      std::conjunction_v<detail::has_message<Inbox, detail::handled<Fs>>...>,
      "a handler takes a message its role's inbox does not name, or answers "
      "other than the inbox says (actors/protocol.hpp)");
  static_assert(detail::distinct<detail::handled<Fs>...>::value,
                "two handlers for one message");
  static_assert(sizeof...(Fs) == detail::size_of<Inbox>::value,
                "a message of the role's inbox has no handler "
                "(actors/protocol.hpp)");
  return {std::move(handlers)...};
}

/// send_slices to a role that takes Msg.
template <class Self, class Inbox, class Msg>
void send_slices(Self* self, const handle<Inbox>& to, Msg msg) {
  static_assert(accepts<Inbox, Msg>, "the receiving role's inbox has no such "
                                     "message (actors/protocol.hpp)");
  send_slices(self, to.raw(), std::move(msg));
}

} // namespace troupe::actors

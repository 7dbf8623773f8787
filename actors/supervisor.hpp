#pragma once
/// \file Supervision of a job's actors (DESIGN §4), run by the coordinator:
/// detect a failure -> pick the restart set by strategy -> respawn (on a
/// surviving node when the actor's node was lost) -> escalate when a role
/// restarts too often -> roll the whole job back to its newest checkpoint
/// when a recovery cannot hold (a node lost, a failure during a recovery,
/// --resume). It owns the generations, incarnations, restart history and
/// lost nodes; what a restarted actor needs to catch up is its role's own
/// recovery hook (recover_worker etc., beside each role). Heavy (CAF):
/// include from .cpp files only.
#include "actors/checkpoint_ledger.hpp"
#include "actors/messages.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace troupe::actors {

/// What the supervisor asks of the job it supervises (the coordinator).
class supervised_job {
public:
  virtual ~supervised_job() = default;
  virtual bool started() const = 0;
  virtual bool finished() const = 0;
  /// Ends the job with `why` (named actor, cause).
  virtual void fail(std::string why) = 0;
  /// One line for the job's listener.
  virtual void info(std::string line) = 0;
  /// An event for the job's listener (its message is the line to show).
  virtual void event(job_event e) = 0;
  /// The steps the slowest worker has done.
  virtual std::int64_t slowest_steps() const = 0;
  /// Training goes on with worker r at steps[r] (a rollback or resume).
  virtual void workers_at(const std::vector<std::int64_t>& steps) = 0;
  /// A new evaluator: it gets every epoch's parameters not yet evaluated.
  virtual void evaluator_restarted() = 0;
  /// --resume found the checkpoint at `version`. True when that is the
  /// job's end (it finishes with the checkpoint's parameters); false:
  /// training goes on from there.
  virtual bool resumed_at(std::int64_t version,
                          const std::vector<shard_state_msg>& states) = 0;
  /// Where the newest checkpoint is, for messages ("step 40 in DIR").
  virtual std::string last_checkpoint() const = 0;
};

class supervisor {
public:
  using clock_type = std::chrono::steady_clock;

  supervisor(caf::event_based_actor* self, supervised_job& job, job_spec& spec,
             topology& topo, run_result& result, checkpoint_ledger& ledger,
             caf::actor store);

  /// Monitors every actor and node manager of the topology.
  void watch_all();

  /// A monitored actor or node manager stopped.
  void on_down(const caf::down_msg& dm);

  /// --resume: the job goes on from the newest checkpoint in its
  /// directory (from step 0 when there is none).
  void resume();

  /// Kills or freezes a node's process ([[chaos]], `troupe kill --node`):
  /// "" when done, else why not.
  std::string fault_node(const std::string& node, const std::string& action);

  /// `troupe kill TARGET`: the actor ("worker:3") or node ("node:NAME")
  /// dies as a crash would. "" when done, else why not.
  std::string kill(const std::string& target);

  /// The slowest worker finished `slowest` steps: recoveries that began
  /// before it are over (their time goes into the result), and node
  /// faults of [[chaos]] due by then are injected.
  void progressed(std::int64_t slowest);

  /// A rollback began after `gen` began: an answer or timer of `gen` is
  /// stale and dropped.
  bool stale(std::int64_t gen) const { return gen != generation_; }
  std::int64_t generation() const { return generation_; }

  /// The current incarnation of actor `name` (0 for the first).
  std::int64_t incarnation(const std::string& name) const;

  // For the roles' recovery hooks.
  caf::event_based_actor* self() const { return self_; }
  supervised_job& job() const { return job_; }
  const job_spec& spec() const { return spec_; }
  topology& topo() const { return topo_; }
  const caf::actor& store() const { return store_; }
  /// A share in the recovery whose hook runs now (empty outside one). A
  /// hook keeps a copy in each of its requests' handlers: the recovery is
  /// under way until every copy is gone, and a failure meanwhile rolls the
  /// job back instead of restarting alone.
  std::shared_ptr<const void> recovery_hold() const { return hold_; }
  /// By worker: the step its current incarnation began at (it kept no
  /// gradients from before).
  std::vector<std::int64_t>& first_step() { return first_step_; }
  /// Rolls the whole job back to its newest checkpoint: every training
  /// actor is spawned again (a lost node's on the surviving nodes) and
  /// training goes on from there.
  void rollback(const std::string& why);

private:
  struct recovery {
    clock_type::time_point detected;
    // The slowest worker's steps once the respawns and hooks were done (-1
    // before): training must get past it. A report sent before then may
    // come after, so that is taken at the first report after.
    std::int64_t settled;
    std::string what; // "worker:1", "the rollback"
    // Held by its respawn requests and its hooks' requests.
    std::weak_ptr<const void> work = {};
  };

  void node_lost(std::size_t n, const std::string& why);
  /// Tells the job an event of `kind` now (step: the slowest worker's).
  void announce(std::string kind, std::string actor, std::string node,
                double ms, std::string message);
  std::vector<std::string> restart_set(const std::string& name) const;
  std::optional<std::size_t> home_of(const std::string& name, std::string& why);
  void respawn(const std::string& name,
               std::function<void(caf::actor)> then = nullptr);
  void recover(const std::string& name, caf::actor h);
  void adopt(const std::string& name, const caf::actor& h);
  void stop_training_actors();
  void respawn_all(std::int64_t gen, std::int64_t version,
                   std::shared_ptr<const std::vector<shard_state_msg>> states,
                   std::optional<clock_type::time_point> detected);
  void restore_all(std::int64_t version,
                   const std::vector<shard_state_msg>& states,
                   std::optional<clock_type::time_point> detected,
                   bool evaluator_new);
  void with_checkpoint(
      std::int64_t gen, const char* what,
      std::function<void(std::int64_t, std::vector<shard_state_msg>&)> then);
  void count_restart(const std::string& name);

  caf::event_based_actor* self_;
  supervised_job& job_;
  job_spec& spec_;
  topology& topo_;
  run_result& result_;
  checkpoint_ledger& ledger_;
  caf::actor store_;
  // A rollback in progress; answers of an older generation are dropped.
  std::int64_t generation_ = 0;
  bool rolling_ = false;
  std::vector<recovery> recovering_;
  std::shared_ptr<const void> hold_; // while a recovery's hook runs
  std::vector<std::int64_t> first_step_;
  std::map<std::string, std::int64_t> incarnation_; // by actor name
  std::map<std::string, std::deque<clock_type::time_point>> restart_times_;
  // Lost nodes (killed, or silent past the heartbeat timeout): their
  // actors run on the surviving nodes now.
  std::set<std::string> lost_nodes_;
  std::map<caf::actor_addr, std::size_t> manager_of_; // node manager -> node
  std::map<std::string, clock_type::time_point> faulted_; // node -> when
  std::vector<bool> chaos_done_; // by spec.chaos entry (node faults)
};

/// Each role's recovery hook: the restarted actor `h` is wired with its
/// peers and brought back to where training is. Each lives beside its role.
///
/// A worker is told the step to redo (sync: the oldest step a shard waits
/// for; async/ssp: its oldest gradient some shard has not applied) and
/// fetches those versions once its aggregator relays to it.
void recover_worker(supervisor& sup, std::int32_t index, const caf::actor& h);
/// Its workers resubscribe (or its first data stage, for them).
void recover_data_shard(supervisor& sup, std::int32_t index,
                        const caf::actor& h);
/// Wired to what feeds it; what it feeds (the next stage, or the workers)
/// resubscribes to it, from where each worker is.
void recover_stage(supervisor& sup, std::int32_t index, const caf::actor& h);
/// The shards learn the new handle and publish their versions again; then
/// its workers are wired to it and replay their last gradients.
void recover_aggregator(supervisor& sup, std::int32_t index,
                        const caf::actor& h);
/// Restored from its newest good snapshot; the workers replay the steps
/// since (a rollback when some worker kept no gradients that far back).
void recover_param_shard(supervisor& sup, std::int32_t index,
                         const caf::actor& h);
/// Wired, and given every epoch's parameters not yet evaluated.
void recover_evaluator(supervisor& sup, const caf::actor& h);

} // namespace troupe::actors

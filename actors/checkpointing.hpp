#pragma once
/// \file The coordinator's side of a job's checkpoints: where snapshots go
/// (a checkpoint directory, or a temporary one of the job's own), the
/// snapshot store, the ledger of what is on disk and what workers keep,
/// warnings when the disk refuses, and the final checkpoint of a job that
/// ends. Heavy (CAF): include from .cpp files only.
#include "actors/checkpoint_ledger.hpp"
#include "actors/messages.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace troupe::actors {

class job_checkpoints {
public:
  /// What is said to the job's listener.
  using info_fn = std::function<void(std::string)>;

  /// Snapshots go to `snap.dir`, or, when empty, to a directory of the
  /// job's own in the temporary directory, removed at the end (those of
  /// killed jobs are removed here). Spawns the store, linked to `self`.
  job_checkpoints(caf::event_based_actor* self, const job_spec& spec,
                  snapshot_options snap, info_fn info);

  const caf::actor& store() const { return store_; }
  checkpoint_ledger& ledger() { return ledger_; }
  const snapshot_options& options() const { return snap_; }

  /// The newest step every param shard has a snapshot of, for messages:
  /// "step 40 in DIR", "step 40" or "none".
  std::string last() const;

  /// A param shard's snapshot: filed in the ledger, sent to the store.
  void taken(shard_state_msg m, std::int64_t offset, std::int64_t total);

  /// The store wrote a snapshot: workers prune what they no longer need.
  void durable(const topology& t, std::int32_t shard, std::int64_t version);

  /// The store could not write a snapshot (a full disk): said once per run
  /// of failures; the final checkpoint, if asked for, is given up.
  void failed(std::int32_t shard, std::int64_t version, const std::string& why);

  /// Whether the final state of every param shard is on disk (asked only
  /// with a checkpoint directory; true otherwise, or once given up). Asks
  /// the shards the first time; `changed` is called when an answer comes.
  /// `gen` is the supervisor's generation (answers of an older are
  /// dropped via `stale`).
  bool final_written(const std::vector<caf::actor>& shards, std::int64_t gen,
                     std::function<bool(std::int64_t)> stale,
                     std::function<void()> changed);

  /// The final checkpoint is not coming: its deadline passed.
  void give_up_final(const std::string& why);

  /// No final checkpoint is needed (stopped early, an exchange-only job,
  /// or the checkpoint read by --resume is the job's end).
  void final_not_needed() { final_needed_ = false; }

private:
  caf::event_based_actor* self_;
  snapshot_options snap_;
  info_fn info_;
  caf::actor store_;
  checkpoint_ledger ledger_;
  std::int64_t failures_ = 0; // snapshots not written since the last that was
  bool final_needed_ = true;
  bool final_requested_ = false;
  bool final_given_up_ = false;
  std::vector<std::int64_t> final_versions_; // by shard; -1: not answered
};

} // namespace troupe::actors

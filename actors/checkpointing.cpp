#include "actors/checkpointing.hpp"
#include "actors/protocol.hpp"
#include "actors/update_rule.hpp"

#include <cerrno>
#include <csignal>
#include <filesystem>

#include <unistd.h>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

// Removes base/troupe-snapshots-PID-* of processes that no longer exist.
void remove_orphaned_snapshot_dirs(const std::string& base) {
  const std::string prefix = "troupe-snapshots-";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
    const auto name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0)
      continue;
    const auto dash = name.find('-', prefix.size());
    const auto pid_text = name.substr(prefix.size(), dash - prefix.size());
    if (dash == std::string::npos || pid_text.empty() ||
        pid_text.find_first_not_of("0123456789") != std::string::npos ||
        pid_text.size() > 9)
      continue;
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH)
      std::filesystem::remove_all(e.path(), ec);
  }
}

} // namespace

job_checkpoints::job_checkpoints(caf::event_based_actor* self,
                                 const job_spec& spec, snapshot_options snap,
                                 info_fn info)
  : self_(self)
  , snap_(std::move(snap))
  , info_(std::move(info))
  , ledger_(static_cast<std::int32_t>(spec.partitions),
            static_cast<std::int32_t>(spec.workers),
            update_rule(spec).sums_workers()) {
  if (snap_.dir.empty()) {
    // The directory's name carries this process's id: those of jobs killed
    // before they could remove theirs (SIGKILL) are removed here.
    const auto base = std::filesystem::temp_directory_path().string();
    remove_orphaned_snapshot_dirs(base);
    std::string tmpl =
        fmt::format("{}/troupe-snapshots-{}-XXXXXX", base, ::getpid());
    const char* made = ::mkdtemp(tmpl.data());
    snap_.dir = made != nullptr ? made : base;
    snap_.keep = made == nullptr;
  }
  snap_.shards = static_cast<std::int32_t>(spec.partitions);
  store_ = spawn_snapshot_store(self, snap_, caf::actor_cast<caf::actor>(self));
}

std::string job_checkpoints::last() const {
  const auto version = ledger_.checkpoint();
  if (version < 0)
    return "none";
  return snap_.keep ? fmt::format("step {} in {}", version, snap_.dir)
                    : fmt::format("step {}", version);
}

void job_checkpoints::taken(shard_state_msg m, std::int64_t offset,
                            std::int64_t total) {
  ledger_.add_ledger(m.shard, m.version, m.ledger);
  tell(self_, snapshot_store_handle{store_}, snapshot_atom::value, std::move(m),
       offset, total);
}

// Workers keep their gradients from the second newest snapshot of each
// shard on (a corrupt newest one falls back to it).
void job_checkpoints::durable(const topology& t, std::int32_t shard,
                              std::int64_t version) {
  if (failures_ > 0) {
    info_(fmt::format("snapshots are written again ({} were not)", failures_));
    failures_ = 0;
  }
  const auto prune = ledger_.durable(shard, version);
  if (prune.all)
    for (auto& w : t.workers)
      tell(self_, worker_handle{w}, prune_atom::value, *prune.all);
  for (const auto& [w, keep] : prune.by_worker)
    tell(self_, worker_at(t, w), prune_atom::value, keep);
}

// Training goes on; recovery uses the newest checkpoint that was kept.
void job_checkpoints::failed(std::int32_t shard, std::int64_t version,
                             const std::string& why) {
  if (failures_++ == 0)
    info_(fmt::format("warning: param_shard:{}'s snapshot of step {} was not "
                      "written: {}; training goes on, and a failure now goes "
                      "back to the newest checkpoint kept ({})",
                      shard, version, why, last()));
  if (final_requested_ && !final_given_up_)
    give_up_final("the final checkpoint was not written");
}

void job_checkpoints::give_up_final(const std::string& why) {
  if (final_given_up_)
    return;
  final_given_up_ = true;
  info_(fmt::format("{}; the newest is {}", why, last()));
}

bool job_checkpoints::final_written(const std::vector<caf::actor>& shards,
                                    std::int64_t gen,
                                    std::function<bool(std::int64_t)> stale,
                                    std::function<void()> changed) {
  if (!snap_.keep || !final_needed_ || final_given_up_)
    return true;
  if (!final_requested_) {
    final_requested_ = true;
    final_versions_.assign(shards.size(), -1);
    for (std::size_t p = 0; p < shards.size(); ++p)
      ask(self_, param_shard_handle{shards[p]}, std::chrono::seconds(30),
          snapshot_atom::value, done_atom::value)
          .then(
              [=](std::int64_t version) {
                if (stale(gen))
                  return;
                final_versions_[p] = version;
                changed();
              },
              [=](caf::error& err) {
                if (stale(gen))
                  return;
                give_up_final(fmt::format("the final checkpoint was not "
                                          "written (param_shard:{}: {})",
                                          p, self_->system().render(err)));
                changed();
              });
    // A store that cannot write (a full disk) never reports the files.
    self_->delayed_send(self_, std::chrono::seconds(60), snapshot_atom::value,
                        done_atom::value, gen);
    return false;
  }
  return ledger_.written(final_versions_);
}

} // namespace troupe::actors

// snapshot_store: the coordinator's store of param shard snapshots, on a
// thread of its own in the driver's process (off every node: a node that is
// lost does not take its shards' snapshots with it). Each snapshot is a
// file in the job's snapshot directory, written atomically and checked on
// reading (runtime/snapshot.hpp).
//
// Kept per shard: the newest two files (a corrupt newest one falls back to
// the one before), and the files of the newest two versions that every
// shard has written: the job's checkpoints, from which the whole job can
// roll back (a lost node) or resume (--resume). In a checkpoint directory
// (--checkpoint-dir) the files stay after the job; otherwise the directory
// is removed when the store stops.
#include "actors/protocol.hpp"

#include "runtime/snapshot.hpp"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

constexpr std::size_t kept_per_shard = 2;
constexpr std::size_t kept_checkpoints = 2;

struct store_state {
  snapshot_options opts;
  coordinator_handle coordinator;
  std::map<std::int32_t, std::map<std::int64_t, std::string>>
      files; // by shard: version -> path
};

std::string file_name(const std::string& dir, std::int32_t shard,
                      std::int64_t version) {
  return fmt::format("{}/param_shard-{}-v{:012}.snap", dir, shard, version);
}

// Versions every shard has a file of, newest first.
std::vector<std::int64_t> checkpoints(const store_state& st) {
  std::vector<std::int64_t> out;
  auto first = st.files.find(0);
  if (first == st.files.end())
    return out;
  for (auto it = first->second.rbegin(); it != first->second.rend(); ++it) {
    bool everywhere = true;
    for (std::int32_t s = 1; s < st.opts.shards && everywhere; ++s) {
      auto f = st.files.find(s);
      everywhere = f != st.files.end() && f->second.count(it->first) > 0;
    }
    if (everywhere)
      out.push_back(it->first);
  }
  return out;
}

void prune(store_state& st) {
  auto cps = checkpoints(st);
  cps.resize(std::min(cps.size(), kept_checkpoints));
  const std::set<std::int64_t> keep(cps.begin(), cps.end());
  for (auto& [shard, list] : st.files) {
    std::size_t newer = 0;
    for (auto it = list.rbegin(); it != list.rend();) {
      if (newer++ < kept_per_shard || keep.count(it->first) > 0) {
        ++it;
        continue;
      }
      std::error_code ec;
      std::filesystem::remove(it->second, ec);
      it = decltype(it)(list.erase(std::next(it).base()));
    }
  }
}

// Reads and checks one file; a bad one is renamed *.bad (kept for the
// user to look at, never read again) and dropped from the lists.
std::optional<runtime::shard_snapshot>
read_checked(store_state& st, std::int32_t shard, std::int64_t version,
             std::vector<std::string>& problems) {
  auto& list = st.files[shard];
  const auto it = list.find(version);
  if (it == list.end())
    return std::nullopt;
  const auto path = it->second;
  try {
    auto s = runtime::read_snapshot_file(path);
    if (s.shard != shard || s.version != version)
      throw runtime::snapshot_error(
          fmt::format("{}: holds param_shard:{} version {}, expected "
                      "param_shard:{} version {}",
                      path, s.shard, s.version, shard, version));
    if (!st.opts.job.empty() && s.job != st.opts.job)
      throw runtime::snapshot_error(
          fmt::format("{}: written by a different job (fingerprint {}, this "
                      "job's is {})",
                      path, s.job.empty() ? "none" : s.job.substr(0, 12),
                      st.opts.job.substr(0, 12)));
    return s;
  } catch (const runtime::snapshot_error& e) {
    problems.push_back(e.what());
    list.erase(it);
    std::error_code ec;
    std::filesystem::rename(path, path + ".bad", ec);
    return std::nullopt;
  }
}

shard_state_msg to_msg(runtime::shard_snapshot&& s) {
  shard_state_msg out;
  out.shard = s.shard;
  out.version = s.version;
  out.params = std::move(s.params);
  out.optimizer_state = std::move(s.optimizer_state);
  out.ledger = std::move(s.ledger);
  return out;
}

caf::behavior snapshot_store(caf::stateful_actor<store_state>* self,
                             snapshot_options opts, caf::actor coordinator) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.coordinator = coordinator_handle{std::move(coordinator)};
  if (!st.opts.keep) {
    self->attach_functor([dir = st.opts.dir] {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
  }
  // A checkpoint directory may hold the files of the run this one resumes.
  for (const auto& [shard, version, path] : list_snapshots(st.opts.dir))
    if (shard >= 0 && shard < st.opts.shards)
      st.files[shard][version] = path;
  return behavior_of<snapshot_store_inbox>(
      [=](snapshot_atom, shard_state_msg& m, std::int64_t offset,
          std::int64_t total) {
        auto& st = self->state;
        auto& list = st.files[m.shard];
        if (list.count(m.version) > 0) {
          // Written before (the same bits: a rolled-back job redoes them).
          tell(self, st.coordinator, durable_atom::value, m.shard, m.version);
          return;
        }
        const auto path = file_name(st.opts.dir, m.shard, m.version);
        runtime::shard_snapshot s;
        s.shard = m.shard;
        s.version = m.version;
        s.offset = offset;
        s.total = total;
        s.params = std::move(m.params);
        s.optimizer_state = std::move(m.optimizer_state);
        s.ledger = std::move(m.ledger);
        s.job = st.opts.job;
        try {
          runtime::write_snapshot_file(path, s);
        } catch (const runtime::snapshot_error& e) {
          // A full disk, a read-only directory: the coordinator decides.
          tell(self, st.coordinator, snapshot_atom::value, failed_atom::value,
               m.shard, m.version, std::string(e.what()));
          return;
        }
        list[m.version] = path;
        prune(st);
        tell(self, st.coordinator, durable_atom::value, m.shard, m.version);
      },
      [=](load_atom, std::int32_t shard) {
        // The newest snapshot of one shard that reads back whole; version 0
        // (the seeded start) when none does.
        auto& st = self->state;
        shard_state_msg out;
        out.shard = shard;
        std::vector<std::string> problems;
        auto& list = st.files[shard];
        while (!list.empty()) {
          if (auto s =
                  read_checked(st, shard, list.rbegin()->first, problems)) {
            out = to_msg(std::move(*s));
            break;
          }
        }
        return caf::make_message(std::move(out), std::move(problems));
      },
      [=](checkpoint_atom) {
        // The newest checkpoint whose files all read back: its version and
        // every shard's state; version 0 (the seeded start, no states) when
        // there is none.
        auto& st = self->state;
        std::vector<std::string> problems;
        for (auto version : checkpoints(st)) {
          std::vector<shard_state_msg> states;
          for (std::int32_t s = 0; s < st.opts.shards; ++s) {
            auto snap = read_checked(st, s, version, problems);
            if (!snap)
              break;
            states.push_back(to_msg(std::move(*snap)));
          }
          if (static_cast<std::int32_t>(states.size()) == st.opts.shards)
            return caf::make_message(version, std::move(states),
                                     std::move(problems));
        }
        return caf::make_message(std::int64_t{0},
                                 std::vector<shard_state_msg>{},
                                 std::move(problems));
      });
}

} // namespace

namespace {

// "123" -> 123; anything else (empty, signs, other characters) -> -1.
std::int64_t digits(const std::string& s) {
  if (s.empty() || s.size() > 15 ||
      s.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stoll(s);
}

} // namespace

std::vector<std::tuple<std::int32_t, std::int64_t, std::string>>
list_snapshots(const std::string& dir) {
  std::vector<std::tuple<std::int32_t, std::int64_t, std::string>> out;
  std::error_code ec;
  const std::string prefix = "param_shard-", suffix = ".snap";
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    // param_shard-S-vN.snap
    const auto f = e.path().filename().string();
    if (f.size() <= prefix.size() + suffix.size() ||
        f.compare(0, prefix.size(), prefix) != 0 ||
        f.compare(f.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const auto mid =
        f.substr(prefix.size(), f.size() - prefix.size() - suffix.size());
    const auto dash = mid.find("-v");
    if (dash == std::string::npos)
      continue;
    const auto shard = digits(mid.substr(0, dash));
    const auto version = digits(mid.substr(dash + 2));
    if (shard < 0 || shard > (1 << 20) || version < 0)
      continue;
    out.emplace_back(static_cast<std::int32_t>(shard), version,
                     e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

caf::actor spawn_snapshot_store(caf::local_actor* owner, snapshot_options opts,
                                caf::actor coordinator) {
  if (!opts.own_thread)
    return owner->spawn<caf::linked>(snapshot_store, std::move(opts),
                                     std::move(coordinator));
  return owner->spawn<caf::detached + caf::linked>(
      snapshot_store, std::move(opts), std::move(coordinator));
}

} // namespace troupe::actors

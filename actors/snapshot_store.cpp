// snapshot_store: the coordinator's store of param shard snapshots, on a
// thread of its own in the driver's process (off every node: a node that is
// lost does not take its shards' snapshots with it). Each snapshot is a
// file in the job's snapshot directory, written atomically and checked on
// reading (runtime/snapshot.hpp); the newest two per shard are kept, so a
// corrupt newest file falls back to the one before.
#include "actors/messages.hpp"

#include "runtime/snapshot.hpp"

#include <filesystem>
#include <map>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

constexpr std::size_t kept_per_shard = 2;

struct store_state {
  std::string dir;
  caf::actor coordinator;
  std::map<std::int32_t, std::vector<std::pair<std::int64_t, std::string>>>
      files; // by shard: (version, path), oldest first
};

caf::behavior snapshot_store(caf::stateful_actor<store_state>* self,
                             std::string dir, caf::actor coordinator) {
  auto& st = self->state;
  st.dir = std::move(dir);
  st.coordinator = std::move(coordinator);
  self->attach_functor([dir = st.dir] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  });
  return {
      [=](snapshot_atom, shard_state_msg& m, std::int64_t offset,
          std::int64_t total) {
        auto& st = self->state;
        auto& list = st.files[m.shard];
        if (!list.empty() && list.back().first >= m.version)
          return; // that version (or a later one) is on disk already
        const auto path = fmt::format("{}/param_shard-{}-v{:012}.snap", st.dir,
                                      m.shard, m.version);
        runtime::shard_snapshot s;
        s.shard = m.shard;
        s.version = m.version;
        s.offset = offset;
        s.total = total;
        s.params = std::move(m.params);
        s.optimizer_state = std::move(m.optimizer_state);
        s.ledger = std::move(m.ledger);
        try {
          runtime::write_snapshot_file(path, s);
        } catch (const runtime::snapshot_error& e) {
          self->send(st.coordinator, info_atom::value,
                     fmt::format("snapshot not kept: {}", e.what()));
          return;
        }
        list.emplace_back(m.version, path);
        while (list.size() > kept_per_shard) {
          std::error_code ec;
          std::filesystem::remove(list.front().second, ec);
          list.erase(list.begin());
        }
        self->send(st.coordinator, durable_atom::value, m.shard, m.version);
      },
      [=](load_atom, std::int32_t shard) {
        // The newest snapshot that reads back whole; version 0 (the seeded
        // start) when none does. Files found bad are reported and dropped.
        auto& st = self->state;
        shard_state_msg out;
        out.shard = shard;
        std::vector<std::string> problems;
        auto& list = st.files[shard];
        while (!list.empty()) {
          try {
            auto s = runtime::read_snapshot_file(list.back().second);
            if (s.shard != shard || s.version != list.back().first)
              throw runtime::snapshot_error(
                  fmt::format("{}: holds param_shard:{} version {}, expected "
                              "param_shard:{} version {}",
                              list.back().second, s.shard, s.version, shard,
                              list.back().first));
            out.version = s.version;
            out.params = std::move(s.params);
            out.optimizer_state = std::move(s.optimizer_state);
            out.ledger = std::move(s.ledger);
            break;
          } catch (const runtime::snapshot_error& e) {
            problems.push_back(e.what());
            list.pop_back();
          }
        }
        return caf::make_message(std::move(out), std::move(problems));
      },
  };
}

} // namespace

caf::actor spawn_snapshot_store(caf::local_actor* owner, std::string dir,
                                caf::actor coordinator) {
  return owner->spawn<caf::detached + caf::linked>(
      snapshot_store, std::move(dir), std::move(coordinator));
}

} // namespace troupe::actors

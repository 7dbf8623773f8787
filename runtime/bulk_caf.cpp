#include "runtime/bulk_caf.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <cstdio>
#include <string>

namespace troupe::runtime {

namespace {

bulk_decoder& decoder() {
  static bulk_decoder d;
  return d;
}

} // namespace

void set_bulk_decoder(bulk_decoder d) {
  decoder() = std::move(d);
}

std::shared_ptr<bulk_plane> start_bulk_plane(caf::actor_system& sys,
                                             const std::string& host,
                                             double send_timeout_s,
                                             const cluster_secret& secret,
                                             const std::string& who) {
  // Dropped frames are logged, but a stream of them (a restarted actor's
  // old address, a confused peer) must not flood the log: the first ten,
  // then one in a thousand, with the count.
  auto dropped = std::make_shared<std::atomic<std::int64_t>>(0);
  auto deliver = [&sys, who, dropped](bulk_header&& h, devices::tensor&& t) {
    const auto drop = [&](const std::string& why) {
      const auto n = ++*dropped;
      if (n <= 10 || n % 1000 == 0)
        std::fprintf(stderr,
                     "%s (data plane): %s; frame dropped (%lld so far)\n",
                     who.c_str(), why.c_str(), static_cast<long long>(n));
    };
    // Actors whose handles went to another process are in the registry.
    auto dest = sys.registry().get(static_cast<caf::actor_id>(h.dest));
    if (!dest || !decoder()) {
      drop("no actor " + std::to_string(h.dest) + " here");
      return;
    }
    const auto kind = h.kind;
    auto msg = decoder()(std::move(h), std::move(t));
    if (msg.empty()) {
      drop("a frame of unknown kind " + std::to_string(kind));
      return;
    }
    dest->enqueue(caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                            std::move(msg)),
                  nullptr);
  };
  auto plane =
      std::make_shared<bulk_plane>(host, std::move(deliver), send_timeout_s,
                                   true, secret, who + " (data plane)");
  set_process_bulk_plane(plane);
  return plane;
}

void stop_bulk_plane(std::shared_ptr<bulk_plane>& plane) {
  if (process_bulk_plane() == plane)
    set_process_bulk_plane(nullptr);
  plane.reset();
}

std::string bulk_key(const caf::node_id& node) {
  return caf::to_string(node);
}

bool bulk_send(const caf::actor& dest, std::uint32_t kind,
               std::vector<std::int64_t> tags, const devices::tensor& payload) {
  auto plane = process_bulk_plane();
  if (plane == nullptr || !dest)
    return false;
  const auto key = bulk_key(dest.node());
  if (!plane->knows(key))
    return false;
  bulk_header h;
  h.dest = dest.id();
  h.kind = kind;
  h.tags = std::move(tags);
  return plane->send(key, h, payload);
}

} // namespace troupe::runtime

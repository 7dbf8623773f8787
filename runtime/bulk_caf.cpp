#include "runtime/bulk_caf.hpp"

#include <caf/all.hpp>

#include <openssl/evp.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

namespace troupe::runtime {

namespace {

bulk_decoder& decoder() {
  static bulk_decoder d;
  return d;
}

// Which job each actor of this process is filed under (bind_to_job).
struct job_table {
  std::mutex lock;
  std::unordered_map<caf::actor_id, std::uint64_t> tags;
};
job_table& jobs() {
  static job_table t;
  return t;
}

// The tag of an actor's job; 0 when it is filed under none.
std::uint64_t tag_of(caf::actor_id a) {
  auto& t = jobs();
  std::lock_guard<std::mutex> guard(t.lock);
  auto it = t.tags.find(a);
  return it == t.tags.end() ? 0 : it->second;
}

} // namespace

void set_bulk_decoder(bulk_decoder d) {
  decoder() = std::move(d);
}

std::shared_ptr<bulk_plane>
start_bulk_plane(caf::actor_system& sys, const std::string& host,
                 double send_timeout_s, const cluster_secret& secret,
                 const std::string& who,
                 std::shared_ptr<const tls_context> tls) {
  // Dropped frames are logged, but a stream of them (a restarted actor's
  // old address, a confused peer) must not flood the log: the first ten,
  // then one in a thousand, with the count.
  auto dropped = std::make_shared<std::atomic<std::int64_t>>(0);
  auto deliver = [&sys, who, dropped](std::uint64_t job, bulk_header&& h,
                                      devices::tensor&& t) {
    const auto drop = [&](const std::string& why) {
      const auto n = ++*dropped;
      if (n <= 10 || n % 1000 == 0)
        std::fprintf(stderr,
                     "%s (data plane): %s; frame dropped (%lld so far)\n",
                     who.c_str(), why.c_str(), static_cast<long long>(n));
    };
    // Actors whose handles went to another process are in the registry.
    const auto id = static_cast<caf::actor_id>(h.dest);
    auto dest = sys.registry().get(id);
    if (!dest || !decoder()) {
      drop("no actor " + std::to_string(h.dest) + " here");
      return;
    }
    // A connection feeds the actors of the job it was opened for only.
    if (const auto tag = tag_of(id); tag == 0 || tag != job) {
      drop("actor " + std::to_string(h.dest) +
           " is not an actor of the job its connection was opened for");
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
  auto plane = std::make_shared<bulk_plane>(
      host, std::move(deliver), send_timeout_s, true, secret,
      who + " (data plane)", std::move(tls));
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

std::uint64_t job_tag(const std::string& job_id) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(job_id.data(), job_id.size(), md, &len, EVP_sha256(), nullptr);
  std::uint64_t tag = 0;
  std::memcpy(&tag, md, sizeof(tag));
  return tag == 0 ? 1 : tag; // 0 means "no job"
}

void bind_to_job(caf::actor_id actor, std::uint64_t tag) {
  auto& t = jobs();
  std::lock_guard<std::mutex> guard(t.lock);
  t.tags[actor] = tag;
}

void unbind_from_job(caf::actor_id actor) {
  auto& t = jobs();
  std::lock_guard<std::mutex> guard(t.lock);
  t.tags.erase(actor);
}

bool bulk_send(caf::actor_id from, const caf::actor& dest, std::uint32_t kind,
               std::vector<std::int64_t> tags, const devices::tensor& payload) {
  auto plane = process_bulk_plane();
  if (plane == nullptr || !dest)
    return false;
  const auto job = tag_of(from);
  if (job == 0)
    return false;
  const auto key = bulk_key(dest.node());
  if (!plane->knows(key))
    return false;
  bulk_header h;
  h.dest = dest.id();
  h.kind = kind;
  h.tags = std::move(tags);
  // A frame the plane then cannot deliver goes through CAF, as it would
  // have without the plane (the receiver takes either).
  return plane->send(key, job, h, payload,
                     [dest](bulk_header&& h, devices::tensor&& t) {
                       if (!decoder())
                         return;
                       auto msg = decoder()(std::move(h), std::move(t));
                       if (!msg.empty())
                         caf::anon_send(dest, std::move(msg));
                     });
}

} // namespace troupe::runtime

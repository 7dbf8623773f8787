// The data plane: frames between two planes on loopback, header checks,
// and what a sender sees when the peer is unknown, gone or frozen.
#include "runtime/bulk.hpp"
#include "runtime/tls.hpp"

#include "runtime/wire.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

namespace rt = troupe::runtime;
namespace dv = troupe::devices;

namespace {

struct inbox {
  std::mutex lock;
  std::condition_variable cv;
  std::vector<std::pair<rt::bulk_header, dv::tensor>> frames;
  std::vector<std::uint64_t> jobs; // the job of each frame's connection

  rt::bulk_plane::handler handler() {
    return [this](std::uint64_t job, rt::bulk_header&& h, dv::tensor&& t) {
      std::lock_guard<std::mutex> guard(lock);
      frames.emplace_back(std::move(h), std::move(t));
      jobs.push_back(job);
      cv.notify_all();
    };
  }
  bool wait_for(std::size_t n) {
    std::unique_lock<std::mutex> guard(lock);
    return cv.wait_for(guard, std::chrono::seconds(10),
                       [&] { return frames.size() >= n; });
  }
};

void ignore(std::uint64_t, rt::bulk_header&&, dv::tensor&&) {}

// A CA and one member's TLS directory in a temporary directory.
struct member_tls {
  std::string root;
  std::shared_ptr<const rt::tls_context> ctx;
  member_tls() {
    char name[] = "/tmp/troupe-bulk-pki-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(name) != nullptr);
    root = name;
    rt::make_ca(root + "/ca", "ca", 2);
    rt::issue_cert(root + "/ca", root + "/m", "m", {}, 2);
    ctx = rt::tls_context::load(root + "/m");
  }
  ~member_tls() { std::system(("rm -rf '" + root + "'").c_str()); }
};

} // namespace

BOOST_AUTO_TEST_SUITE(bulk)

BOOST_DATA_TEST_CASE(frames_arrive_whole_and_in_order,
                     boost::unit_test::data::make({true, false}),
                     same_host_sockets) {
  // Over the same-machine Unix socket, and over TCP.
  inbox got;
  rt::bulk_plane receiver("127.0.0.1", got.handler(), 5, same_host_sockets);
  rt::bulk_plane sender("127.0.0.1", ignore);
  BOOST_TEST(receiver.address().rfind("127.0.0.1:", 0) == 0u);
  BOOST_TEST((receiver.address().find(";unix=troupe-bulk-") !=
              std::string::npos) == same_host_sockets);
  BOOST_TEST(!sender.knows("peer"));
  sender.set_peer("peer", receiver.address());
  BOOST_TEST(sender.knows("peer"));
  // A large tensor with values CAF 0.17's float packer would corrupt.
  std::vector<float> big(rt::max_bulk_elements); // the largest accepted
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<float>(i) * 0.5f;
  big[7] = std::numeric_limits<float>::quiet_NaN();
  big[8] = -0.0f;
  big[9] = std::numeric_limits<float>::infinity();
  big[10] = 1e-42f; // subnormal
  auto t = dv::tensor::from({static_cast<std::int64_t>(big.size())}, big);
  for (int i = 0; i < 3; ++i) {
    rt::bulk_header h;
    h.dest = 40 + static_cast<std::uint64_t>(i);
    h.kind = 2;
    h.tags = {i, -5, 1LL << 40};
    BOOST_TEST(
        sender.send("peer", 7, h, i == 1 ? dv::tensor::zeros({2, 3}) : t));
  }
  BOOST_REQUIRE(got.wait_for(3));
  BOOST_TEST((got.jobs == std::vector<std::uint64_t>{7, 7, 7}));
  for (int i = 0; i < 3; ++i) {
    auto& [h, v] = got.frames[static_cast<std::size_t>(i)];
    BOOST_TEST(h.dest == 40u + static_cast<unsigned>(i));
    BOOST_TEST(h.kind == 2u);
    BOOST_TEST((h.tags == std::vector<std::int64_t>{i, -5, 1LL << 40}));
    if (i == 1) {
      BOOST_TEST((v.shape() == dv::shape_t{2, 3}));
    } else {
      BOOST_REQUIRE(v.numel() == t.numel());
      BOOST_TEST(std::memcmp(v.data(), t.data(), t.bytes()) == 0);
    }
  }
  BOOST_TEST(sender.drain(std::chrono::seconds(10)));
  BOOST_TEST(sender.frames_sent() == 3);
  BOOST_TEST(receiver.frames_received() == 3);
}

BOOST_AUTO_TEST_CASE(unknown_or_gone_peers_fail_the_send) {
  rt::bulk_plane sender("127.0.0.1", ignore, 1.0);
  auto t = dv::tensor::zeros({4});
  BOOST_TEST(!sender.send("nobody", 1, {}, t));
  std::string address;
  {
    inbox got;
    rt::bulk_plane receiver("127.0.0.1", got.handler());
    address = receiver.address();
    sender.set_peer("peer", address);
    BOOST_TEST(sender.send("peer", 1, {}, t));
    BOOST_REQUIRE(got.wait_for(1));
  }
  // The receiver is gone: the first write may still land in the kernel,
  // but within a few tries the send reports failure, and never hangs.
  bool failed = false;
  for (int i = 0; i < 50 && !failed; ++i) {
    failed = !sender.send("peer", 1, {}, t);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  BOOST_TEST(failed);
}

BOOST_DATA_TEST_CASE(frames_of_each_job_go_on_their_own_connection_in_tls,
                     boost::unit_test::data::make({true, false}),
                     same_host_sockets) {
  member_tls pki;
  inbox got;
  rt::bulk_plane receiver("127.0.0.1", got.handler(), 5, same_host_sockets, {},
                          "receiver", pki.ctx);
  rt::bulk_plane sender("127.0.0.1", ignore, 5, same_host_sockets, {}, "sender",
                        pki.ctx);
  sender.set_peer("peer", receiver.address());
  std::vector<float> big(rt::max_bulk_elements);
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<float>(i % 1000) - 0.25f;
  auto t = dv::tensor::from({static_cast<std::int64_t>(big.size())}, big);
  // Two jobs interleaved: each frame arrives tagged with its own job.
  for (int i = 0; i < 4; ++i) {
    rt::bulk_header h;
    h.dest = static_cast<std::uint64_t>(i);
    BOOST_TEST(sender.send("peer", i % 2 == 0 ? 11 : 22, h, t));
  }
  BOOST_REQUIRE(got.wait_for(4));
  std::lock_guard<std::mutex> guard(got.lock);
  for (std::size_t i = 0; i < 4; ++i) {
    const auto dest = got.frames[i].first.dest;
    BOOST_TEST(got.jobs[i] == (dest % 2 == 0 ? 11u : 22u));
    BOOST_REQUIRE(got.frames[i].second.numel() == t.numel());
    BOOST_TEST(std::memcmp(got.frames[i].second.data(), t.data(), t.bytes()) ==
               0);
  }
  // A sender without TLS is refused at the receiver's gate: nothing lands,
  // and the frame is given back for another way.
  rt::bulk_plane plain("127.0.0.1", ignore, 1.0, same_host_sockets);
  plain.set_peer("peer", receiver.address());
  inbox back;
  rt::bulk_header h;
  h.dest = 99;
  const auto to_back = back.handler();
  BOOST_TEST(plain.send("peer", 11, h, t,
                        [to_back](rt::bulk_header&& h, dv::tensor&& v) {
                          to_back(0, std::move(h), std::move(v));
                        }));
  BOOST_REQUIRE(back.wait_for(1));
  BOOST_TEST(back.frames[0].first.dest == 99u);
  BOOST_TEST(back.frames[0].second.shares_storage(t)); // not copied
  BOOST_TEST(plain.frames_sent() == 0);
  BOOST_TEST(receiver.frames_received() == 4);
  // For a while after, sends say no at once (the caller's fallback).
  BOOST_TEST(!plain.send("peer", 11, {}, t));
}

BOOST_AUTO_TEST_CASE(a_peer_that_stops_reading_never_holds_the_sender) {
  // A listener that never reads: the kernel's buffers fill, and the
  // connection's thread waits in its write, never the caller.
  const int quiet = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(
      ::bind(quiet, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  BOOST_REQUIRE(::listen(quiet, 4) == 0);
  socklen_t len = sizeof(addr);
  ::getsockname(quiet, reinterpret_cast<sockaddr*>(&addr), &len);
  rt::bulk_plane sender("127.0.0.1", ignore, 30.0, false);
  sender.set_peer("frozen", fmt::format("127.0.0.1:{}", ntohs(addr.sin_port)));
  auto t =
      dv::tensor::zeros({static_cast<std::int64_t>(rt::max_bulk_elements)});
  // 4 MiB frames: the handshake never completes, so every frame waits. The
  // queue takes 64 MiB, then says no, at once each time.
  const auto start = std::chrono::steady_clock::now();
  int taken = 0;
  for (int i = 0; i < 40; ++i)
    taken += sender.send("frozen", 1, {}, t) ? 1 : 0;
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(taken >= 15);
  BOOST_TEST(taken <= 17);
  BOOST_TEST(std::chrono::duration<double>(took).count() < 5.0);
  BOOST_TEST(!sender.drain(std::chrono::milliseconds(200)));
  // Forgetting the peer frees its connection's thread and drops the frames
  // (none is given back: the peer is gone); later sends fail at once.
  sender.forget_peer("frozen");
  BOOST_TEST(!sender.send("frozen", 1, {}, t));
  BOOST_TEST(sender.frames_sent() == 0);
  ::close(quiet);
}

BOOST_AUTO_TEST_CASE(malformed_headers_are_rejected) {
  rt::bulk_header h;
  h.dest = 3;
  h.tags = {1, 2};
  auto bytes = rt::encode_bulk_header(h, dv::tensor::zeros({5, 2}));
  // Length prefix, then a word-aligned message.
  std::uint32_t n = 0;
  std::memcpy(&n, bytes.data(), sizeof(n));
  BOOST_REQUIRE(n + sizeof(n) == bytes.size());
  auto [back, shape] = rt::decode_bulk_header(bytes.data() + 4, n);
  BOOST_TEST(back.dest == 3u);
  BOOST_TEST((shape == dv::shape_t{5, 2}));
  BOOST_CHECK_THROW(rt::decode_bulk_header(bytes.data() + 4, n - 3),
                    rt::wire_error);
  BOOST_CHECK_THROW(rt::decode_bulk_header(bytes.data() + 4, 0),
                    rt::wire_error);
  std::vector<std::uint8_t> junk(64, 0xff);
  BOOST_CHECK_THROW(rt::decode_bulk_header(junk.data(), junk.size()),
                    rt::wire_error);
  // A header declaring more than the plane takes (a forged 16 GiB frame) is
  // refused from the header alone, before anything is allocated.
  for (const dv::shape_t& s :
       {dv::shape_t{static_cast<std::int64_t>(rt::max_bulk_elements) + 1},
        dv::shape_t{1 << 16, 1 << 16}}) {
    rt::bulk_header big;
    BOOST_TEST_INFO(dv::to_string(s));
    const auto elements = static_cast<std::uint64_t>(dv::numel_of(s));
    auto forged = rt::encode_bulk_header(big, s);
    std::uint32_t len = 0;
    std::memcpy(&len, forged.data(), sizeof(len));
    try {
      rt::decode_bulk_header(forged.data() + 4, len);
      BOOST_ERROR("a header of " << elements << " elements was accepted");
    } catch (const rt::wire_error& e) {
      const std::string why = e.what();
      BOOST_TEST((why.find("too large") != std::string::npos ||
                  why.find("more than") != std::string::npos),
                 why);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

// The cluster secret and the handshake: secrets read and refused, a gate on
// loopback that admits the right secret and refuses, times out or sheds
// everything else, and says why on both sides; the same inside mutual TLS.
#include "runtime/auth.hpp"
#include "runtime/tls.hpp"

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace rt = troupe::runtime;
using namespace std::chrono_literals;

namespace {

// A gate on an OS-chosen loopback port that counts what it admits.
struct gate_on_loopback {
  std::uint16_t port = 0;
  std::atomic<int> admitted{0};
  std::unique_ptr<rt::auth_gate> gate;

  gate_on_loopback(const rt::cluster_secret& s, rt::auth_channel ch,
                   rt::gate_limits limits = {},
                   std::shared_ptr<const rt::tls_context> tls = nullptr) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    BOOST_REQUIRE(::listen(fd, 128) == 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    gate = std::make_unique<rt::auth_gate>(
        std::vector<int>{fd}, s, ch,
        [this](int c, std::unique_ptr<rt::tls_stream> t, const std::string&) {
          // With TLS, what the client sends next arrives through it: one
          // byte, answered with its successor.
          if (t) {
            char b = 0;
            std::size_t n = 0;
            for (int i = 0; i < 500 && n == 0; ++i) {
              if (t->read(&b, 1, n) == rt::tls_io::ok && n == 1)
                break;
              std::this_thread::sleep_for(2ms);
            }
            ++b;
            t->write(&b, 1, n);
          }
          ++admitted;
          t.reset();
          ::close(c);
        },
        "test gate", limits, std::move(tls));
  }
};

int dial(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

// The auth_error text of a client handshake, or "" when it succeeded
// (with TLS: and a byte went through it and came back as its successor).
std::string handshake(std::uint16_t port, const rt::cluster_secret& s,
                      rt::auth_channel ch,
                      std::shared_ptr<const rt::tls_context> tls = nullptr) {
  const int fd = dial(port);
  std::string result;
  try {
    auto t = rt::client_handshake(fd, s, ch, "the node",
                                  std::chrono::steady_clock::now() + 5s, tls);
    if (tls) {
      BOOST_REQUIRE(t);
      char b = 'a';
      std::size_t n = 0;
      BOOST_TEST((t->write(&b, 1, n) == rt::tls_io::ok && n == 1));
      rt::tls_io r = rt::tls_io::want_read;
      for (int i = 0; i < 500 && r != rt::tls_io::ok; ++i) {
        r = t->read(&b, 1, n);
        if (r != rt::tls_io::ok)
          std::this_thread::sleep_for(2ms);
      }
      BOOST_TEST((r == rt::tls_io::ok && b == 'b'));
    } else {
      BOOST_TEST(!t);
    }
  } catch (const rt::auth_error& e) {
    result = e.what();
  }
  ::close(fd);
  return result;
}

// A CA and members in a fresh temporary directory, removed at the end.
struct cluster_pki {
  std::string root;
  explicit cluster_pki() {
    char name[] = "/tmp/troupe-pki-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(name) != nullptr);
    root = name;
  }
  ~cluster_pki() { std::system(("rm -rf '" + root + "'").c_str()); }
  std::string ca(const std::string& name) {
    rt::make_ca(root + "/" + name, name, 30);
    return root + "/" + name;
  }
  std::shared_ptr<const rt::tls_context> member(const std::string& ca_dir,
                                                const std::string& name) {
    rt::issue_cert(ca_dir, root + "/" + name, name, {"127.0.0.1"}, 30);
    return rt::tls_context::load(root + "/" + name);
  }
};

bool eventually(const std::function<bool()>& ok) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!ok()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string temp_file(const std::string& text, mode_t mode) {
  char name[] = "/tmp/troupe-secret-XXXXXX";
  const int fd = ::mkstemp(name);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::write(fd, text.data(), text.size()) ==
                static_cast<ssize_t>(text.size()));
  ::fchmod(fd, mode);
  ::close(fd);
  return name;
}

} // namespace

BOOST_AUTO_TEST_SUITE(auth)

BOOST_AUTO_TEST_CASE(secrets_round_trip_and_bad_ones_are_named) {
  const auto s = rt::make_secret();
  const auto hex = rt::secret_to_hex(s);
  BOOST_TEST(hex.size() == 64u);
  BOOST_TEST(rt::parse_secret("  " + hex + "\n", "x").key == s.key);
  BOOST_TEST(rt::make_secret().key != s.key);
  try {
    rt::parse_secret("abc", "secret file f");
    BOOST_FAIL("a short secret was taken");
  } catch (const rt::secret_error& e) {
    BOOST_TEST(contains(e.what(), "secret file f: a cluster secret is 64 hex"));
  }
  BOOST_CHECK_THROW(rt::parse_secret(std::string(64, 'g'), "x"),
                    rt::secret_error);
}

BOOST_AUTO_TEST_CASE(secret_files_others_can_read_are_refused) {
  const auto hex = rt::secret_to_hex(rt::make_secret());
  const auto open_file = temp_file(hex + "\n", 0644);
  try {
    rt::load_secret_file(open_file);
    BOOST_FAIL("a world-readable secret file was taken");
  } catch (const rt::secret_error& e) {
    BOOST_TEST(contains(e.what(), "permissions 0644 let others read it"));
    BOOST_TEST(contains(e.what(), open_file));
  }
  const auto good = temp_file(hex + "\n", 0600);
  BOOST_TEST(rt::secret_to_hex(rt::load_secret_file(good)) == hex);
  ::unlink(open_file.c_str());
  ::unlink(good.c_str());
  BOOST_CHECK_THROW(rt::load_secret_file("/nonexistent/secret"),
                    rt::secret_error);
}

BOOST_AUTO_TEST_CASE(loopback_hosts_are_told_apart) {
  BOOST_TEST(rt::is_loopback_host("127.0.0.1"));
  BOOST_TEST(rt::is_loopback_host("127.3.4.5"));
  BOOST_TEST(rt::is_loopback_host("localhost"));
  BOOST_TEST(!rt::is_loopback_host("0.0.0.0"));
  BOOST_TEST(!rt::is_loopback_host("10.0.0.1"));
}

BOOST_AUTO_TEST_CASE(the_right_secret_is_admitted_and_every_wrong_one_named) {
  const auto s = rt::make_secret();
  gate_on_loopback g(s, rt::auth_channel::caf);
  BOOST_TEST(handshake(g.port, s, rt::auth_channel::caf) == "");
  BOOST_TEST(eventually([&] { return g.admitted == 1; }));

  const auto other =
      handshake(g.port, rt::make_secret(), rt::auth_channel::caf);
  BOOST_TEST(
      contains(other, "the node: refused this process's cluster secret"));
  const auto none = handshake(g.port, {}, rt::auth_channel::caf);
  BOOST_TEST(contains(none, "requires the cluster secret: pass --secret-file"));
  const auto port_kind = handshake(g.port, s, rt::auth_channel::bulk);
  BOOST_TEST(contains(port_kind, "is not a data-plane port"));
  BOOST_TEST(eventually([&] { return g.gate->stats().refused == 3; }));
  BOOST_TEST(g.admitted == 1);
}

BOOST_AUTO_TEST_CASE(a_client_with_a_secret_refuses_a_node_without_one) {
  gate_on_loopback open_gate({}, rt::auth_channel::bulk);
  BOOST_TEST(handshake(open_gate.port, {}, rt::auth_channel::bulk) == "");
  const auto e =
      handshake(open_gate.port, rt::make_secret(), rt::auth_channel::bulk);
  BOOST_TEST(contains(e, "does not use a cluster secret"));
  BOOST_TEST(eventually([&] { return open_gate.admitted == 1; }));
}

BOOST_AUTO_TEST_CASE(garbage_silence_and_churn_are_closed_unread) {
  const auto s = rt::make_secret();
  rt::gate_limits limits;
  limits.handshake_timeout_s = 0.3;
  limits.max_pending = 8;
  gate_on_loopback g(s, rt::auth_channel::caf, limits);
  // Garbage the size of a proof: refused, nothing admitted.
  {
    const int fd = dial(g.port);
    std::string junk(200, 'x');
    [[maybe_unused]] auto n =
        ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    BOOST_TEST(eventually([&] { return g.gate->stats().refused == 1; }));
    ::close(fd);
  }
  // A silent connection: closed after the deadline.
  {
    const int fd = dial(g.port);
    BOOST_TEST(eventually([&] { return g.gate->stats().timed_out == 1; }));
    char c;
    BOOST_TEST(::recv(fd, &c, 1, MSG_DONTWAIT) >= 0); // hello, then EOF
    ::close(fd);
  }
  // Twenty silent connections with room for eight: the oldest are shed.
  std::vector<int> held;
  for (int i = 0; i < 20; ++i)
    held.push_back(dial(g.port));
  BOOST_TEST(eventually([&] { return g.gate->stats().shed >= 12; }));
  // ... and a real peer still gets in.
  BOOST_TEST(handshake(g.port, s, rt::auth_channel::caf) == "");
  for (int fd : held)
    ::close(fd);
  // Two thousand connect-and-close: all refused, the gate still answers.
  for (int i = 0; i < 2000; ++i)
    ::close(dial(g.port));
  BOOST_TEST(handshake(g.port, s, rt::auth_channel::caf) == "");
  BOOST_TEST(eventually([&] { return g.admitted == 2; }));
  BOOST_TEST(eventually([&] {
    const auto st = g.gate->stats();
    return st.refused + st.timed_out + st.shed >= 2000 + 14;
  }));
  BOOST_TEST(g.gate->stats().accepted == 2);
}

BOOST_AUTO_TEST_CASE(tls_members_of_one_ca_are_admitted_and_carry_data) {
  cluster_pki pki;
  const auto ca = pki.ca("ca");
  const auto node = pki.member(ca, "node");
  const auto driver = pki.member(ca, "driver");
  const auto s = rt::make_secret();
  gate_on_loopback g(s, rt::auth_channel::caf, {}, node);
  // The secret and a certificate: admitted, and bytes cross inside TLS.
  BOOST_TEST(handshake(g.port, s, rt::auth_channel::caf, driver) == "");
  BOOST_TEST(eventually([&] { return g.admitted == 1; }));
  // Inside TLS the secret is still checked.
  BOOST_TEST(contains(
      handshake(g.port, rt::make_secret(), rt::auth_channel::caf, driver),
      "refused this process's cluster secret"));
  // A client without TLS, told what is missing.
  BOOST_TEST(contains(handshake(g.port, s, rt::auth_channel::caf),
                      "uses TLS, and this process has no certificate"));
  // A TLS client at a node without TLS.
  gate_on_loopback plain(s, rt::auth_channel::caf);
  BOOST_TEST(contains(handshake(plain.port, s, rt::auth_channel::caf, driver),
                      "does not use TLS, and this process does"));
  BOOST_TEST(eventually([&] { return g.gate->stats().refused == 2; }));
  BOOST_TEST(g.admitted == 1);
}

BOOST_AUTO_TEST_CASE(certificates_of_another_ca_are_refused_both_ways) {
  cluster_pki pki;
  const auto ca = pki.ca("ca");
  const auto rogue_ca = pki.ca("rogue-ca");
  const auto node = pki.member(ca, "node");
  // An intruder with a certificate of another CA, who trusts ours too.
  rt::issue_cert(rogue_ca, pki.root + "/intruder", "intruder", {}, 30);
  {
    std::ifstream ours(ca + "/ca.pem");
    std::ofstream bundle(pki.root + "/intruder/ca.pem", std::ios::app);
    bundle << ours.rdbuf();
  }
  const auto intruder = rt::tls_context::load(pki.root + "/intruder");
  // TLS alone (no secret): the certificate is the whole proof, and the
  // node refuses this one; the intruder is told so.
  gate_on_loopback g({}, rt::auth_channel::bulk, {}, node);
  const auto refused = handshake(g.port, {}, rt::auth_channel::bulk, intruder);
  BOOST_TEST(contains(refused, "refused this process's certificate"));
  BOOST_TEST(eventually([&] { return g.gate->stats().refused == 1; }));
  // A node of the other CA: a member refuses it in the TLS handshake,
  // before it has sent the node anything of the protocol.
  const auto rogue_only = pki.member(rogue_ca, "rogue-node");
  gate_on_loopback rogue({}, rt::auth_channel::bulk, {}, rogue_only);
  const auto member_side =
      handshake(rogue.port, {}, rt::auth_channel::bulk, node);
  BOOST_TEST(contains(member_side, "certificate verify failed"));
  BOOST_TEST(contains(member_side, "unable to get local issuer certificate"));
  BOOST_TEST(
      contains(member_side, "trusts the CA of " + pki.root + "/node/ca.pem"));
  BOOST_TEST(g.admitted == 0);
  BOOST_TEST(rogue.admitted == 0);
}

BOOST_AUTO_TEST_CASE(a_tls_gate_closes_garbage_and_silence) {
  cluster_pki pki;
  const auto node = pki.member(pki.ca("ca"), "node");
  rt::gate_limits limits;
  limits.handshake_timeout_s = 0.3;
  gate_on_loopback g({}, rt::auth_channel::caf, limits, node);
  {
    const int fd = dial(g.port);
    std::string junk(4096, 'x'); // not a ClientHello
    [[maybe_unused]] auto n =
        ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    BOOST_TEST(eventually([&] { return g.gate->stats().refused == 1; }));
    ::close(fd);
  }
  {
    const int fd = dial(g.port);
    BOOST_TEST(eventually([&] { return g.gate->stats().timed_out == 1; }));
    ::close(fd);
  }
  cluster_pki other;
  const auto member = other.member(pki.root + "/ca", "member");
  BOOST_TEST(handshake(g.port, {}, rt::auth_channel::caf, member) == "");
  BOOST_TEST(eventually([&] { return g.admitted == 1; }));
}

BOOST_AUTO_TEST_SUITE_END()

// troupe cert's CA and member certificates, and what loading a TLS
// directory refuses: a key others can read, a key of another certificate,
// a certificate of another CA, an expired one, files that are not PEM.
#include "runtime/tls.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

namespace rt = troupe::runtime;

namespace {

struct temp_dir {
  std::string path;
  temp_dir() {
    char name[] = "/tmp/troupe-tls-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(name) != nullptr);
    path = name;
  }
  ~temp_dir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The tls_error text of loading dir, or "" when it loaded.
std::string load_error(const std::string& dir) {
  try {
    rt::tls_context::load(dir);
  } catch (const rt::tls_error& e) {
    return e.what();
  }
  return {};
}

std::string issue_error(const std::string& ca, const std::string& out,
                        const std::string& name, int days = 30) {
  try {
    rt::issue_cert(ca, out, name, {}, days);
  } catch (const rt::tls_error& e) {
    return e.what();
  }
  return {};
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  BOOST_REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from);
  std::ofstream out(to, std::ios::trunc);
  out << in.rdbuf();
}

} // namespace

BOOST_AUTO_TEST_SUITE(tls)

BOOST_AUTO_TEST_CASE(a_ca_and_its_members_load_with_private_keys) {
  temp_dir t;
  rt::make_ca(t.path + "/ca", "test-ca", 30);
  BOOST_TEST(mode_of(t.path + "/ca") == 0700u);
  BOOST_TEST(mode_of(t.path + "/ca/ca.key") == 0600u);
  rt::issue_cert(t.path + "/ca", t.path + "/node0", "node0",
                 {"127.0.0.1", "node0.example", "::1"}, 30);
  const auto p = rt::tls_paths_in(t.path + "/node0");
  BOOST_TEST(mode_of(p.key) == 0600u);
  BOOST_TEST(mode_of(p.cert) == 0644u);
  const auto ctx = rt::tls_context::load(t.path + "/node0");
  BOOST_TEST(ctx->name() == "node0");
  BOOST_TEST(ctx->dir() == t.path + "/node0");
  // Nothing is replaced: a second CA or member in the same place fails.
  BOOST_CHECK_THROW(rt::make_ca(t.path + "/ca", "again", 30), rt::tls_error);
  BOOST_TEST(contains(issue_error(t.path + "/ca", t.path + "/node0", "node0"),
                      "already exists; not replaced"));
  // The first files are still good.
  BOOST_TEST(load_error(t.path + "/node0") == "");
}

BOOST_AUTO_TEST_CASE(bad_names_days_and_missing_cas_are_named) {
  temp_dir t;
  BOOST_TEST(contains(issue_error(t.path + "/nope", t.path + "/m", "m"),
                      t.path + "/nope/ca.pem"));
  rt::make_ca(t.path + "/ca", "ca", 30);
  BOOST_TEST(contains(issue_error(t.path + "/ca", t.path + "/m", "a,b"),
                      "--name: 'a,b' is not a name"));
  BOOST_TEST(contains(issue_error(t.path + "/ca", t.path + "/m", "m", 0),
                      "--days: 0 is out of range"));
  // Nothing half-made was left behind.
  BOOST_TEST(::access((t.path + "/m/key.pem").c_str(), F_OK) != 0);
}

BOOST_AUTO_TEST_CASE(unusable_tls_directories_are_refused_with_the_file) {
  temp_dir t;
  rt::make_ca(t.path + "/ca", "ca", 30);
  rt::make_ca(t.path + "/other", "other", 30);
  rt::issue_cert(t.path + "/ca", t.path + "/a", "a", {}, 30);
  rt::issue_cert(t.path + "/ca", t.path + "/b", "b", {}, 30);
  rt::issue_cert(t.path + "/other", t.path + "/x", "x", {}, 30);
  const auto a = rt::tls_paths_in(t.path + "/a");

  BOOST_TEST(contains(load_error(t.path + "/none"), "not a directory"));
  // A key others may read.
  ::chmod(a.key.c_str(), 0640);
  const auto readable = load_error(t.path + "/a");
  BOOST_TEST(contains(readable, a.key));
  BOOST_TEST(contains(readable, "permissions 0640 let others read"));
  ::chmod(a.key.c_str(), 0600);
  // The key of another certificate.
  copy_file(t.path + "/b/key.pem", a.key);
  BOOST_TEST(contains(load_error(t.path + "/a"), "is not the key of"));
  // A certificate of another CA than ca.pem.
  copy_file(t.path + "/x/cert.pem", a.cert);
  copy_file(t.path + "/x/key.pem", a.key);
  const auto foreign = load_error(t.path + "/a");
  BOOST_TEST(contains(foreign, a.cert));
  BOOST_TEST(contains(foreign, "unable to get local issuer certificate"));
  // Not PEM at all.
  {
    std::ofstream junk(a.ca, std::ios::trunc);
    junk << "not a certificate\n";
  }
  BOOST_TEST(contains(load_error(t.path + "/a"), a.ca));
  // A missing file.
  ::unlink(a.ca.c_str());
  BOOST_TEST(contains(load_error(t.path + "/a"), "No such file"));
}

BOOST_AUTO_TEST_SUITE_END()

#include "tools/watch/dashboard.hpp"
#include "tools/watch/record.hpp"

#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <cmath>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace tw = troupe::watch;

namespace {

// Sends `request` to 127.0.0.1:port and returns all that comes back until
// the server closes (or 5 s pass).
std::string send_raw(std::uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(port);
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&at), sizeof(at)) != 0) {
    ::close(fd);
    return "(no connection)";
  }
  [[maybe_unused]] auto n = ::write(fd, request.data(), request.size());
  std::string out;
  char buf[65536];
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 5000) > 0) {
    const auto got = ::read(fd, buf, sizeof(buf));
    if (got <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fd);
  return out;
}

std::string get(std::uint16_t port, const std::string& target,
                const std::string& method = "GET") {
  return send_raw(port,
                  method + " " + target +
                      " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string body_of(const std::string& response) {
  const auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

} // namespace

BOOST_AUTO_TEST_SUITE(dashboard)

BOOST_AUTO_TEST_CASE(state_needs_the_token_and_the_page_is_served) {
  int asked = 0;
  tw::dashboard_server server("127.0.0.1", 0, "s3cret", [&] {
    ++asked;
    return std::string(R"({"job":"x"})");
  });
  const auto port = server.port();
  BOOST_TEST(port > 0);
  BOOST_TEST(server.url() ==
             "http://127.0.0.1:" + std::to_string(port) + "/?token=s3cret");
  auto r = get(port, "/api/state?token=s3cret");
  BOOST_TEST(status_line(r) == "HTTP/1.1 200 OK");
  BOOST_TEST(body_of(r) == R"({"job":"x"})");
  BOOST_TEST(r.find("Content-Type: application/json") != std::string::npos);
  BOOST_TEST(asked == 1);
  auto bearer = send_raw(port, "GET /api/state HTTP/1.1\r\nHost: x\r\n"
                               "Authorization: Bearer s3cret\r\n"
                               "Connection: close\r\n\r\n");
  BOOST_TEST(status_line(bearer) == "HTTP/1.1 200 OK");
  for (const char* bad : {"/api/state", "/api/state?token=s3cre",
                          "/api/state?token=s3cretX", "/api/state?x=s3cret"}) {
    r = get(port, bad);
    BOOST_TEST(status_line(r) == "HTTP/1.1 401 Unauthorized", bad);
    BOOST_TEST(body_of(r).find("open the URL troupe printed") !=
               std::string::npos);
  }
  BOOST_TEST(asked == 2); // the refused ones never reached the job
  r = get(port, "/");
  BOOST_TEST(status_line(r) == "HTTP/1.1 200 OK");
  BOOST_TEST(body_of(r).find("<script src=\"dashboard.js\"></script>") !=
             std::string::npos);
  BOOST_TEST(r.find("Content-Security-Policy: default-src 'self'") !=
             std::string::npos);
  r = get(port, "/chart.js");
  BOOST_TEST(status_line(r) == "HTTP/1.1 200 OK");
  BOOST_TEST(body_of(r).find("Chart.js v3.9.1") != std::string::npos);
  BOOST_TEST(body_of(get(port, "/dashboard.js")).find("api/state") !=
             std::string::npos);
  BOOST_TEST(status_line(get(port, "/etc/passwd")) == "HTTP/1.1 404 Not Found");
  BOOST_TEST(status_line(get(port, "/api/state?token=s3cret", "POST")) ==
             "HTTP/1.1 405 Method Not Allowed");
  r = get(port, "/api/state?token=s3cret", "HEAD");
  BOOST_TEST(status_line(r) == "HTTP/1.1 200 OK");
  BOOST_TEST(body_of(r).empty());
}

BOOST_AUTO_TEST_CASE(hostile_requests_close_the_connection_only) {
  tw::dashboard_server server("127.0.0.1", 0, "t",
                              [] { return std::string("{}"); });
  const auto port = server.port();
  // Not HTTP, headers past 8 KiB, a body it does not take: no answer or
  // an error, and the server still serves afterwards.
  BOOST_TEST(status_line(send_raw(port, "\x16\x03\x01garbage\r\n\r\n")) !=
             "HTTP/1.1 200 OK");
  const std::string huge =
      "GET / HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n";
  BOOST_TEST(status_line(send_raw(port, huge)) != "HTTP/1.1 200 OK");
  const std::string body = "GET / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" +
                           std::string(100000, 'b');
  BOOST_TEST(status_line(send_raw(port, body)) != "HTTP/1.1 200 OK");
  BOOST_TEST(status_line(get(port, "/api/state?token=t")) == "HTTP/1.1 200 OK");
}

BOOST_AUTO_TEST_CASE(a_port_in_use_or_a_bad_host_is_named) {
  tw::dashboard_server first("127.0.0.1", 0, "t",
                             [] { return std::string("{}"); });
  try {
    tw::dashboard_server second("127.0.0.1", first.port(), "t",
                                [] { return std::string("{}"); });
    BOOST_FAIL("no error");
  } catch (const tw::dashboard_error& e) {
    BOOST_TEST(std::string(e.what()).find("cannot listen") != std::string::npos,
               e.what());
  }
  try {
    tw::dashboard_server bad("localhost-ish", 0, "t",
                             [] { return std::string("{}"); });
    BOOST_FAIL("no error");
  } catch (const tw::dashboard_error& e) {
    BOOST_TEST(std::string(e.what()).find("is not an IP address") !=
               std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(tokens_derive_from_the_secret_or_are_random) {
  const std::string secret(32, '\x07');
  BOOST_TEST(tw::dashboard_token(secret) == tw::dashboard_token(secret));
  BOOST_TEST(tw::dashboard_token(secret).size() == 32u);
  BOOST_TEST(tw::dashboard_token(secret) !=
             tw::dashboard_token(std::string(32, '\x08')));
  BOOST_TEST(tw::dashboard_token("") != tw::dashboard_token(""));
}

BOOST_AUTO_TEST_CASE(the_record_as_json) {
  tw::job_record r;
  r.job = "j";
  r.mode = "sync";
  r.state = "training";
  r.epochs = 2;
  r.steps = 100;
  r.batch = 10;
  r.t = 30;
  r.nodes.push_back({"a", {"cpu"}, false, {{"worker:0", 0}, {"worker:1", 2}}});
  r.nodes.push_back({"b", {"cpu", "cuda:0"}, true, {}});
  for (int s = 10; s <= 60; s += 10)
    r.progress.push_back({s, static_cast<double>(s) / 10, 1.0, 0.01});
  r.epochs_done.push_back({1, 50, 5.5, 1.2, 1.1, std::nan("")});
  r.events.push_back({4.2, 40, "fault", "worker:1", "a", "fault injected"});
  const auto j = nlohmann::json::parse(tw::to_json(r));
  BOOST_TEST(j["step"] == 60);
  BOOST_TEST(j["epoch"] == 2);
  // 10 steps of 10 samples a second.
  BOOST_TEST(j["samples_per_s"].get<double>() == 100.0,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(j["eta_s"].get<double>() == 4.0,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(j["restarts"] == 2);
  BOOST_TEST(j["nodes"][1]["lost"] == true);
  BOOST_TEST(j["nodes"][0]["actors"][1]["restarts"] == 2);
  BOOST_TEST(j["progress"][0][4].is_null()); // no rate at the first point
  BOOST_TEST(j["progress"].size() == 6u);
  BOOST_TEST(j["epochs_done"][0]["test_accuracy"].is_null());
  BOOST_TEST(j["events"][0]["kind"] == "fault");
}

BOOST_AUTO_TEST_SUITE_END()

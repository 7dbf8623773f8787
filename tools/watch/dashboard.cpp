#include "tools/watch/dashboard.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <atomic>
#include <optional>
#include <string_view>
#include <thread>

// The page and the chart library, built in (assets.S).
extern "C" {
extern const char troupe_dashboard_html[];
extern const char troupe_dashboard_html_end[];
extern const char troupe_dashboard_js[];
extern const char troupe_dashboard_js_end[];
extern const char troupe_chart_js[];
extern const char troupe_chart_js_end[];
}

namespace troupe::watch {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr int max_connections = 32;
constexpr auto request_deadline = std::chrono::seconds(10);

std::string_view asset(const char* begin, const char* end) {
  return {begin, static_cast<std::size_t>(end - begin)};
}

// The value of `key` in a query string ("a=1&token=x"), or "".
std::string query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto part = query.substr(0, amp);
    const auto eq = part.find('=');
    if (eq != std::string_view::npos && part.substr(0, eq) == key)
      return std::string(part.substr(eq + 1));
    if (amp == std::string_view::npos)
      break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

bool same(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

struct shared {
  std::string token;
  std::function<std::string()> state;
  std::atomic<int> connections{0};
};

class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, std::shared_ptr<shared> s)
    : stream_(std::move(socket))
    , shared_(std::move(s)) {
    ++shared_->connections;
  }
  ~session() { --shared_->connections; }

  void start() { read(); }

private:
  void read() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(1024);
    stream_.expires_after(request_deadline);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) {
          self->on_read(ec);
        });
  }

  void on_read(beast::error_code ec) {
    if (ec) { // closed, timed out, or not HTTP: the connection goes
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return;
    }
    respond(parser_->release());
  }

  void respond(const http::request<http::string_body>& req) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->keep_alive(req.keep_alive());
    res->set(http::field::server, "troupe");
    res->set("X-Content-Type-Options", "nosniff");
    res->set(http::field::cache_control, "no-store");
    const std::string_view target(req.target().data(), req.target().size());
    const auto q = target.find('?');
    const auto path = target.substr(0, q);
    const auto query =
        q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    std::string token = query_value(query, "token");
    const auto auth = req[http::field::authorization];
    if (token.empty() && auth.size() > 7 && auth.substr(0, 7) == "Bearer ")
      token = std::string(auth.substr(7));
    auto reply = [&](http::status status, std::string_view type,
                     std::string body) {
      res->result(status);
      res->set(http::field::content_type,
               beast::string_view(type.data(), type.size()));
      res->body() = std::move(body);
    };
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      reply(http::status::method_not_allowed, "text/plain",
            "troupe dashboard: only GET\n");
      res->set(http::field::allow, "GET, HEAD");
    } else if (path == "/chart.js") {
      reply(http::status::ok, "application/javascript",
            std::string(asset(troupe_chart_js, troupe_chart_js_end)));
      res->set(http::field::cache_control, "max-age=86400");
    } else if (path == "/") {
      reply(
          http::status::ok, "text/html; charset=utf-8",
          std::string(asset(troupe_dashboard_html, troupe_dashboard_html_end)));
      res->set("Content-Security-Policy",
               "default-src 'self'; style-src 'self' 'unsafe-inline'");
    } else if (path == "/dashboard.js") {
      reply(http::status::ok, "application/javascript",
            std::string(asset(troupe_dashboard_js, troupe_dashboard_js_end)));
    } else if (path != "/api/state") {
      reply(http::status::not_found, "text/plain",
            "troupe dashboard: no such page\n");
    } else if (!same(token, shared_->token)) {
      // The page and scripts hold nothing of the job; its state does.
      reply(http::status::unauthorized, "text/plain",
            "troupe dashboard: open the URL troupe printed; it carries the "
            "token the job's state needs\n");
    } else {
      std::string body;
      try {
        body = shared_->state();
      } catch (const std::exception& e) {
        reply(http::status::internal_server_error, "text/plain",
              std::string("troupe dashboard: ") + e.what() + "\n");
      }
      if (!body.empty())
        reply(http::status::ok, "application/json", std::move(body));
    }
    res->prepare_payload();
    if (req.method() == http::verb::head)
      res->body().clear();
    stream_.expires_after(request_deadline);
    http::async_write(
        stream_, *res,
        [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
          if (ec || !res->keep_alive()) {
            beast::error_code ignored;
            self->stream_.socket().shutdown(tcp::socket::shutdown_both,
                                            ignored);
            return;
          }
          self->read();
        });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<shared> shared_;
};

} // namespace

struct dashboard_server::impl {
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::shared_ptr<shared> state = std::make_shared<shared>();
  std::string host;
  std::thread thread;

  void accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec,
                                                         tcp::socket socket) {
      if (ec == asio::error::operation_aborted)
        return;
      if (!ec) {
        if (state->connections.load() >= max_connections) {
          beast::error_code ignored;
          socket.close(ignored); // too many at once: this one goes
        } else {
          std::make_shared<session>(std::move(socket), state)->start();
        }
      }
      accept();
    });
  }
};

dashboard_server::dashboard_server(const std::string& host, std::uint16_t port,
                                   std::string token,
                                   std::function<std::string()> state)
  : impl_(std::make_unique<impl>()) {
  impl_->host = host;
  impl_->state->token = std::move(token);
  impl_->state->state = std::move(state);
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec)
    throw dashboard_error(
        fmt::format("--dashboard {}:{}: {} is not an IP address (give "
                    "127.0.0.1, or 0.0.0.0 for every interface)",
                    host, port, host));
  const tcp::endpoint at{address, port};
  impl_->acceptor.open(at.protocol(), ec);
  if (!ec)
    impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    impl_->acceptor.bind(at, ec);
  if (!ec)
    impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw dashboard_error(fmt::format("--dashboard {}:{}: cannot listen: {}",
                                      host, port, ec.message()));
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

dashboard_server::~dashboard_server() {
  impl_->ioc.stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

std::uint16_t dashboard_server::port() const {
  return impl_->acceptor.local_endpoint().port();
}

std::string dashboard_server::url() const {
  return fmt::format("http://{}:{}/?token={}", impl_->host, port(),
                     impl_->state->token);
}

std::string dashboard_token(const std::string& secret_bytes) {
  unsigned char out[32];
  if (!secret_bytes.empty()) {
    static const char label[] = "troupe dashboard";
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret_bytes.data(),
         static_cast<int>(secret_bytes.size()),
         reinterpret_cast<const unsigned char*>(label), sizeof(label) - 1, out,
         &n);
  } else if (RAND_bytes(out, sizeof(out)) != 1) {
    throw dashboard_error("cannot make a dashboard token: no random bytes");
  }
  std::string hex;
  for (std::size_t i = 0; i < 16; ++i)
    hex += fmt::format("{:02x}", out[i]);
  return hex;
}

} // namespace troupe::watch

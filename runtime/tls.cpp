#include "runtime/tls.hpp"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

using clock = std::chrono::steady_clock;

// The reasons OpenSSL queued for the last failure, in words ("certificate
// verify failed; ..."), and the queue emptied.
std::string openssl_reasons() {
  std::string out;
  while (const auto e = ERR_get_error()) {
    const char* r = ERR_reason_error_string(e);
    const auto text = r != nullptr ? std::string(r) : fmt::format("{:#x}", e);
    if (out.find(text) != std::string::npos)
      continue;
    if (!out.empty())
      out += "; ";
    out += text;
  }
  return out.empty() ? std::string("no detail from OpenSSL") : out;
}

std::string common_name(X509* cert) {
  if (cert == nullptr)
    return {};
  char buf[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName,
                                buf, sizeof(buf)) < 0)
    return {};
  return buf;
}

// A file must be there and be a regular file; a private key must also be
// readable by this user alone.
void check_file(const std::string& path, bool secret) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw tls_error(fmt::format("{}: {}", path, std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw tls_error(fmt::format("{}: not a regular file", path));
  if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    throw tls_error(fmt::format(
        "{}: permissions {:04o} let others read this private key; chmod 600 {}",
        path, st.st_mode & 07777, path));
}

// Encrypted keys would make OpenSSL prompt on the terminal; they are
// refused instead.
int no_passphrase(char*, int, int, void*) {
  return 0;
}

template <class T, void (*Free)(T*)>
struct freer {
  void operator()(T* p) const { Free(p); }
};
using x509_ptr = std::unique_ptr<X509, freer<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, freer<EVP_PKEY, EVP_PKEY_free>>;

x509_ptr read_cert(const std::string& path) {
  check_file(path, false);
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr)
    throw tls_error(fmt::format("{}: {}", path, std::strerror(errno)));
  ERR_clear_error();
  x509_ptr cert(PEM_read_X509(f, nullptr, no_passphrase, nullptr));
  std::fclose(f);
  if (!cert)
    throw tls_error(
        fmt::format("{}: not a PEM certificate ({})", path, openssl_reasons()));
  return cert;
}

pkey_ptr read_key(const std::string& path) {
  check_file(path, true);
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr)
    throw tls_error(fmt::format("{}: {}", path, std::strerror(errno)));
  ERR_clear_error();
  pkey_ptr key(PEM_read_PrivateKey(f, nullptr, no_passphrase, nullptr));
  std::fclose(f);
  if (!key)
    throw tls_error(fmt::format("{}: not an unencrypted PEM private key ({})",
                                path, openssl_reasons()));
  return key;
}

void make_private_dir(const std::string& dir) {
  std::error_code ec; // the parents as mkdir -p would make them
  const auto parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty())
    std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw tls_error(fmt::format("{}: {}", dir, std::strerror(errno)));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw tls_error(fmt::format("{}: not a directory", dir));
}

// Files written by one make_ca / issue_cert; removed again unless kept.
class new_files {
public:
  ~new_files() {
    if (!keep_)
      for (const auto& p : paths_)
        ::unlink(p.c_str());
  }
  template <class Write>
  void write(const std::string& path, mode_t mode, Write&& w) {
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
      throw tls_error(fmt::format("{}: {}", path,
                                  errno == EEXIST
                                      ? std::string("already exists; not "
                                                    "replaced")
                                      : std::strerror(errno)));
    paths_.push_back(path);
    FILE* f = ::fdopen(fd, "w");
    if (f == nullptr) {
      ::close(fd);
      throw tls_error(fmt::format("{}: {}", path, std::strerror(errno)));
    }
    const bool ok = w(f) == 1;
    if (std::fclose(f) != 0 || !ok)
      throw tls_error(fmt::format("{}: cannot be written", path));
  }
  void keep() { keep_ = true; }

private:
  std::vector<std::string> paths_;
  bool keep_ = false;
};

pkey_ptr new_key() {
  ERR_clear_error();
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key)
    throw tls_error(
        fmt::format("cannot make an EC key ({})", openssl_reasons()));
  return key;
}

void add_ext(X509* cert, X509V3_CTX& ctx, int nid, const std::string& value) {
  X509_EXTENSION* e =
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, const_cast<char*>(value.c_str()));
  if (e == nullptr || X509_add_ext(cert, e, -1) != 1) {
    if (e != nullptr)
      X509_EXTENSION_free(e);
    throw tls_error(fmt::format("cannot add the certificate extension {} ({})",
                                value, openssl_reasons()));
  }
  X509_EXTENSION_free(e);
}

// A certificate for `key` named `name`, signed by issuer/issuer_key (by
// itself when issuer is null).
x509_ptr new_cert(EVP_PKEY* key, const std::string& name, X509* issuer,
                  EVP_PKEY* issuer_key, int days,
                  const std::vector<std::pair<int, std::string>>& exts) {
  x509_ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1)
    throw tls_error("cannot make a certificate");
  // A random 127-bit serial number: unique without a ledger.
  BIGNUM* serial = BN_new();
  const bool serial_ok =
      serial != nullptr &&
      BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
      BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(serial);
  if (!serial_ok)
    throw tls_error("cannot draw a serial number");
  // An hour of slack for clocks that differ.
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * days);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
      subject, "O", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("troupe cluster"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(
      subject, "CN", MBSTRING_UTF8,
      reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_set_issuer_name(
      cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : subject);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(),
                 nullptr, nullptr, 0);
  for (const auto& [nid, value] : exts)
    add_ext(cert.get(), ctx, nid, value);
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key,
                EVP_sha256()) == 0)
    throw tls_error(
        fmt::format("cannot sign the certificate ({})", openssl_reasons()));
  return cert;
}

void check_days(int days) {
  if (days < 1 || days > 36500)
    throw tls_error(
        fmt::format("--days: {} is out of range (1 to 36500 days)", days));
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() > 64 ||
      !std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
               c == '.' || c == '_';
      }))
    throw tls_error(fmt::format(
        "--name: '{}' is not a name (1 to 64 letters, digits, '-', '.', '_')",
        name));
}

} // namespace

tls_paths tls_paths_in(const std::string& dir) {
  return {dir + "/ca.pem", dir + "/cert.pem", dir + "/key.pem"};
}

std::shared_ptr<const tls_context> tls_context::load(const std::string& dir) {
  const auto paths = tls_paths_in(dir);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw tls_error(
        fmt::format("--tls-dir {}: not a directory (it holds ca.pem, cert.pem "
                    "and key.pem; see `troupe cert --help`)",
                    dir));
  check_file(paths.ca, false);
  check_file(paths.cert, false);
  check_file(paths.key, true);
  std::shared_ptr<tls_context> c(new tls_context);
  c->dir_ = dir;
  ERR_clear_error();
  c->ctx_ = SSL_CTX_new(TLS_method());
  if (c->ctx_ == nullptr)
    throw tls_error(
        fmt::format("cannot make a TLS context ({})", openssl_reasons()));
  SSL_CTX* ctx = c->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  // AES-128-GCM first: 10 rounds to AES-256's 14 on the data plane's
  // gigabytes, and no weaker than the P-256 key exchange in front of it.
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                "TLS_CHACHA20_POLY1305_SHA256");
  SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
  if (SSL_CTX_use_certificate_chain_file(ctx, paths.cert.c_str()) != 1)
    throw tls_error(fmt::format("{}: not a PEM certificate ({})", paths.cert,
                                openssl_reasons()));
  auto key = read_key(paths.key);
  if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key.get()) != 1) {
    ERR_clear_error();
    throw tls_error(
        fmt::format("{} is not the key of {}", paths.key, paths.cert));
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1)
    throw tls_error(
        fmt::format("{}: cannot be used ({})", paths.key, openssl_reasons()));
  if (SSL_CTX_load_verify_locations(ctx, paths.ca.c_str(), nullptr) != 1)
    throw tls_error(fmt::format("{}: not a PEM CA certificate ({})", paths.ca,
                                openssl_reasons()));
  // Our own certificate must pass the check every peer will make of it.
  X509* own = SSL_CTX_get0_certificate(ctx);
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx, &chain);
  X509_STORE_CTX* check = X509_STORE_CTX_new();
  if (check == nullptr ||
      X509_STORE_CTX_init(check, SSL_CTX_get_cert_store(ctx), own, chain) !=
          1) {
    X509_STORE_CTX_free(check);
    throw tls_error("cannot check the certificate");
  }
  X509_STORE_CTX_set_purpose(check, X509_PURPOSE_SSL_CLIENT);
  const bool verified = X509_verify_cert(check) == 1;
  const int why = X509_STORE_CTX_get_error(check);
  X509_STORE_CTX_free(check);
  if (!verified)
    throw tls_error(fmt::format("{}: {} (checked against {})", paths.cert,
                                X509_verify_cert_error_string(why), paths.ca));
  c->name_ = common_name(own);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     nullptr);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Partial writes for non-blocking senders; only cert.pem's chain is
  // sent (a peer has the CA).
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_NO_AUTO_CHAIN);
  return c;
}

tls_context::~tls_context() {
  SSL_CTX_free(ctx_);
}

tls_stream::tls_stream(std::shared_ptr<const tls_context> ctx, int fd,
                       bool server)
  : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->native());
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd) != 1) {
    SSL_free(ssl_);
    throw tls_error(
        fmt::format("cannot start a TLS connection ({})", openssl_reasons()));
  }
  if (server)
    SSL_set_accept_state(ssl_);
  else
    SSL_set_connect_state(ssl_);
  // Whole records in as few reads as the socket allows (has_pending
  // covers what is buffered).
  SSL_set_read_ahead(ssl_, 1);
}

tls_stream::~tls_stream() {
  SSL_free(ssl_);
}

tls_io tls_stream::outcome(int ret, const char* what) {
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
      return tls_io::want_read;
    case SSL_ERROR_WANT_WRITE:
      return tls_io::want_write;
    case SSL_ERROR_ZERO_RETURN:
      return tls_io::closed;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        if (errno == 0 || errno == ECONNRESET || errno == EPIPE)
          return tls_io::closed;
        error_ = fmt::format("{}: {}", what, std::strerror(errno));
        return tls_io::failed;
      }
      [[fallthrough]];
    default: {
      error_ = fmt::format("TLS {} failed: {}", what, openssl_reasons());
      const auto v = SSL_get_verify_result(ssl_);
      if (v != X509_V_OK)
        error_ += fmt::format(" (the peer's certificate: {}; this process "
                              "trusts the CA of {}/ca.pem)",
                              X509_verify_cert_error_string(v), ctx_->dir());
      return tls_io::failed;
    }
  }
}

tls_io tls_stream::handshake() {
  ERR_clear_error();
  errno = 0;
  const int r = SSL_do_handshake(ssl_);
  return r == 1 ? tls_io::ok : outcome(r, "handshake");
}

tls_io tls_stream::read(void* buf, std::size_t len, std::size_t& got) {
  got = 0;
  ERR_clear_error();
  errno = 0;
  const int r = SSL_read_ex(ssl_, buf, len, &got);
  return r == 1 ? tls_io::ok : outcome(r, "read");
}

tls_io tls_stream::write(const void* buf, std::size_t len, std::size_t& put) {
  put = 0;
  ERR_clear_error();
  errno = 0;
  const int r = SSL_write_ex(ssl_, buf, len, &put);
  return r == 1 ? tls_io::ok : outcome(r, "write");
}

void tls_stream::gather_writes(std::size_t bytes) {
  BIO* socket = SSL_get_rbio(ssl_); // also the write side until now
  BIO* gather = BIO_new(BIO_f_buffer());
  if (gather == nullptr || BIO_set_write_buffer_size(gather, bytes) != 1) {
    BIO_free(gather);
    return; // records go out one by one, as before
  }
  BIO_up_ref(socket); // one reference for the chain under `gather`
  BIO_push(gather, socket);
  SSL_set0_wbio(ssl_, gather); // drops the write side's reference
}

tls_io tls_stream::flush() {
  BIO* w = SSL_get_wbio(ssl_);
  errno = 0;
  if (BIO_flush(w) == 1)
    return tls_io::ok;
  if (BIO_should_retry(w))
    return tls_io::want_write;
  error_ = fmt::format("flush: {}",
                       errno != 0 ? std::strerror(errno) : "the socket failed");
  return tls_io::failed;
}

bool tls_stream::has_pending() const {
  return SSL_has_pending(ssl_) == 1;
}

std::string tls_handshake_until(tls_stream& s, int fd,
                                clock::time_point deadline) {
  for (;;) {
    const auto r = s.handshake();
    if (r == tls_io::ok)
      return {};
    if (r == tls_io::closed)
      return "closed the connection during the TLS handshake";
    if (r == tls_io::failed)
      return s.error();
    pollfd pf{fd, static_cast<short>(r == tls_io::want_read ? POLLIN : POLLOUT),
              0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - clock::now())
                          .count();
    if (left <= 0 ||
        ::poll(&pf, 1, static_cast<int>(std::min<long long>(left, 1 << 30))) ==
            0)
      return "timed out in the TLS handshake";
  }
}

void make_ca(const std::string& dir, const std::string& name, int days) {
  check_name(name);
  check_days(days);
  make_private_dir(dir);
  auto key = new_key();
  auto cert = new_cert(key.get(), name, nullptr, nullptr, days,
                       {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                        {NID_key_usage, "critical,keyCertSign,cRLSign"},
                        {NID_subject_key_identifier, "hash"}});
  new_files files;
  files.write(dir + "/ca.key", 0600, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr,
                                nullptr);
  });
  files.write(dir + "/ca.pem", 0644,
              [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
  files.keep();
}

void issue_cert(const std::string& ca_dir, const std::string& out_dir,
                const std::string& name, const std::vector<std::string>& hosts,
                int days) {
  check_name(name);
  check_days(days);
  auto ca = read_cert(ca_dir + "/ca.pem");
  auto ca_key = read_key(ca_dir + "/ca.key");
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1)
    throw tls_error(
        fmt::format("{}/ca.key is not the key of {}/ca.pem", ca_dir, ca_dir));
  std::string san = "DNS:" + name;
  for (const auto& h : hosts) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, h.c_str(), buf) == 1 ||
        inet_pton(AF_INET6, h.c_str(), buf) == 1) {
      san += ",IP:" + h;
      continue;
    }
    check_name(h);
    san += ",DNS:" + h;
  }
  make_private_dir(out_dir);
  auto key = new_key();
  auto cert = new_cert(key.get(), name, ca.get(), ca_key.get(), days,
                       {{NID_basic_constraints, "critical,CA:FALSE"},
                        {NID_key_usage, "critical,digitalSignature"},
                        {NID_ext_key_usage, "serverAuth,clientAuth"},
                        {NID_subject_key_identifier, "hash"},
                        {NID_authority_key_identifier, "keyid:always"},
                        {NID_subject_alt_name, san}});
  const auto paths = tls_paths_in(out_dir);
  new_files files;
  files.write(paths.key, 0600, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr,
                                nullptr);
  });
  files.write(paths.cert, 0644,
              [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
  files.write(paths.ca, 0644,
              [&](FILE* f) { return PEM_write_X509(f, ca.get()); });
  files.keep();
}

} // namespace troupe::runtime

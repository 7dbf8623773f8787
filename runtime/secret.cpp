// The cluster secret itself: making one, its text, its files and the
// environment (the handshake that proves it is in auth.cpp).
#include "runtime/auth.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

cluster_secret make_secret() {
  cluster_secret s;
  if (RAND_bytes(s.key.data(), static_cast<int>(s.key.size())) != 1)
    throw secret_error("cannot draw random bytes (OpenSSL RAND_bytes failed)");
  s.set = true;
  return s;
}

std::string secret_to_hex(const cluster_secret& s) {
  std::string out;
  for (auto b : s.key)
    out += fmt::format("{:02x}", b);
  return out;
}

cluster_secret parse_secret(const std::string& text,
                            const std::string& origin) {
  std::string digits;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c)))
      digits += c;
  if (digits.size() != 64 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
      }))
    throw secret_error(fmt::format(
        "{}: a cluster secret is 64 hex digits (as `troupe secret` prints); "
        "found {} characters that are not",
        origin, digits.size()));
  cluster_secret s;
  for (std::size_t i = 0; i < 32; ++i)
    s.key[i] = static_cast<std::uint8_t>(
        std::stoul(digits.substr(2 * i, 2), nullptr, 16));
  s.set = true;
  return s;
}

cluster_secret load_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw secret_error(
        fmt::format("secret file {}: {}", path, std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw secret_error(fmt::format("secret file {}: not a regular file", path));
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    throw secret_error(
        fmt::format("secret file {}: permissions {:04o} let others read it; "
                    "chmod 600 {}",
                    path, st.st_mode & 07777, path));
  if (st.st_size > 4096)
    throw secret_error(
        fmt::format("secret file {}: {} bytes is not a secret (64 hex digits)",
                    path, static_cast<long long>(st.st_size)));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in && !in.eof())
    throw secret_error(fmt::format("secret file {}: cannot be read", path));
  return parse_secret(text.str(), fmt::format("secret file {}", path));
}

cluster_secret secret_from_environment() {
  if (const char* f = std::getenv("TROUPE_SECRET_FILE"); f && *f)
    return load_secret_file(f);
  if (const char* s = std::getenv("TROUPE_SECRET"); s && *s)
    return parse_secret(s, "TROUPE_SECRET");
  return {};
}

void write_secret_file(const std::string& path, const cluster_secret& s) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw secret_error(
        fmt::format("secret file {}: {}", path, std::strerror(errno)));
  const auto text = secret_to_hex(s) + "\n";
  const bool ok = ::write(fd, text.data(), text.size()) ==
                  static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    throw secret_error(fmt::format("secret file {}: cannot be written", path));
  }
}

std::string job_secret_path(const std::string& coordinator_address) {
  const char* base = std::getenv("XDG_RUNTIME_DIR");
  std::string dir = base && *base ? fmt::format("{}/troupe", base)
                                  : fmt::format("/tmp/troupe-{}", ::getuid());
  ::mkdir(dir.c_str(), 0700);
  // Only a directory of ours that no one else can enter will do (another
  // user could have made /tmp/troupe-UID first).
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      st.st_uid != ::getuid() || (st.st_mode & 077) != 0)
    throw secret_error(fmt::format(
        "{} is not a private directory of this user; cannot keep the job's "
        "secret there",
        dir));
  std::string name = coordinator_address;
  std::replace(name.begin(), name.end(), ':', '-');
  std::replace(name.begin(), name.end(), '/', '-');
  return fmt::format("{}/job-{}.secret", dir, name);
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1")
    return true;
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 &&
         (ntohl(a.s_addr) >> 24) == 127;
}

} // namespace troupe::runtime

#include "runtime/digest.hpp"

#include <openssl/evp.h>
#include <zlib.h>

#include <stdexcept>

#include <fmt/format.h>

namespace troupe::runtime {

struct sha256::impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~impl() { EVP_MD_CTX_free(ctx); }
};

sha256::sha256()
  : impl_(std::make_unique<impl>()) {
  if (impl_->ctx == nullptr ||
      EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("OpenSSL: cannot initialise SHA-256");
}

sha256::~sha256() = default;

void sha256::update(const void* data, std::size_t bytes) {
  EVP_DigestUpdate(impl_->ctx, data, bytes);
}

std::string sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &len);
  std::string out;
  out.reserve(2 * len);
  for (unsigned i = 0; i < len; ++i)
    out += fmt::format("{:02x}", md[i]);
  return out;
}

std::string sha256_hex(const void* data, std::size_t bytes) {
  sha256 h;
  h.update(data, bytes);
  return h.hex();
}

std::uint32_t crc32_of(const void* data, std::size_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (bytes > 0) {
    const auto chunk =
        static_cast<uInt>(std::min<std::size_t>(bytes, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    bytes -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

} // namespace troupe::runtime

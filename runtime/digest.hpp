#pragma once
/// \file SHA-256 digests of byte ranges (OpenSSL), as lowercase hex.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace troupe::runtime {

/// Incremental SHA-256.
class sha256 {
public:
  sha256();
  ~sha256();
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;
  void update(const void* data, std::size_t bytes);
  /// Hex digest; the object is spent afterwards.
  std::string hex();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// SHA-256 of one byte range, in hex.
std::string sha256_hex(const void* data, std::size_t bytes);

/// CRC-32 (zlib) of a byte range: the checksum of files on disk.
std::uint32_t crc32_of(const void* data, std::size_t bytes);

} // namespace troupe::runtime

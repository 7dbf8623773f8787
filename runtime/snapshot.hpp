#pragma once
/// \file Snapshot files: the state of one param shard, enough to restart it
/// bit for bit. A file is a Cap'n Proto FileHeader (magic, format version,
/// kind, CRC-32 and size of the body) followed by the body message
/// (schema/troupe.capnp ParamShardSnapshot). Files are written atomically
/// (temporary file, fsync, rename, fsync of the directory) and checked on
/// reading: a truncated or corrupt file is reported by name, never used.
#include "devices/tensor.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::runtime {

/// A file that cannot be read or written; what() names it and says why.
class snapshot_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The format version snapshot files are written in and read back.
constexpr std::uint32_t snapshot_format_version = 1;

struct shard_snapshot {
  std::int32_t shard = 0;
  std::int64_t version = 0; ///< optimizer steps applied (sync: steps)
  std::int64_t offset = 0;  ///< the shard's first element in the model
  std::int64_t total = 0;   ///< elements in the whole model
  devices::tensor params;
  std::vector<devices::tensor> optimizer_state;
  /// async/ssp: per worker, the highest gradient sequence number applied
  /// (the at-most-once ledger); empty in sync mode.
  std::vector<std::int64_t> ledger;
  /// The writing job's fingerprint (empty: not recorded).
  std::string job;
};

/// Writes `s` to `path` atomically. Throws snapshot_error.
void write_snapshot_file(const std::string& path, const shard_snapshot& s);

/// Reads and checks a snapshot file. Throws snapshot_error naming the file
/// and what is wrong (missing, truncated, bad magic, checksum mismatch...).
shard_snapshot read_snapshot_file(const std::string& path);

} // namespace troupe::runtime

#include "runtime/snapshot.hpp"

#include "runtime/tensor_capnp.hpp"
#include "runtime/wire.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::runtime {

namespace {

// "TROUPE01" read as a little-endian integer.
constexpr std::uint64_t file_magic = 0x31304550554f5254ull;
constexpr std::uint32_t format_version = snapshot_format_version;
constexpr const char* snapshot_kind = "snapshot";

std::uint32_t crc_of(const std::uint8_t* p, std::size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const auto step = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    crc = crc32(crc, p, step);
    p += step;
    n -= step;
  }
  return static_cast<std::uint32_t>(crc);
}

devices::tensor read_tensor(schema::Tensor::Reader r, const std::string& path,
                            const char* what) {
  try {
    return get_tensor(r);
  } catch (const wire_error& e) {
    throw snapshot_error(fmt::format("{}: {}: {}", path, what, e.what()));
  }
}

void write_all(int fd, const void* p, std::size_t n, const std::string& path) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const auto put = ::write(fd, c, n);
    if (put < 0 && errno == EINTR)
      continue;
    if (put <= 0)
      throw snapshot_error(
          fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
    c += put;
    n -= static_cast<std::size_t>(put);
  }
}

} // namespace

void write_snapshot_file(const std::string& path, const shard_snapshot& s) {
  capnp::MallocMessageBuilder body;
  auto root = body.initRoot<schema::ParamShardSnapshot>();
  root.setShard(static_cast<std::uint32_t>(s.shard));
  root.setVersion(static_cast<std::uint64_t>(s.version));
  root.setOptimizerStep(static_cast<std::uint64_t>(s.version));
  root.setJob(s.job);
  auto slice = root.initParams();
  slice.setOffset(static_cast<std::uint64_t>(s.offset));
  slice.setTotal(static_cast<std::uint64_t>(s.total));
  set_tensor(slice.initValues(), s.params);
  auto opt =
      root.initOptimizerState(static_cast<unsigned>(s.optimizer_state.size()));
  for (std::size_t i = 0; i < s.optimizer_state.size(); ++i)
    set_tensor(opt[static_cast<unsigned>(i)], s.optimizer_state[i]);
  auto workers =
      root.initAppliedWorkers(static_cast<unsigned>(s.ledger.size()));
  auto steps = root.initAppliedSteps(static_cast<unsigned>(s.ledger.size()));
  for (std::size_t w = 0; w < s.ledger.size(); ++w) {
    workers.set(static_cast<unsigned>(w), static_cast<std::uint32_t>(w));
    // Stored + 1: "nothing applied yet" (-1) is 0 here.
    steps.set(static_cast<unsigned>(w),
              static_cast<std::uint64_t>(s.ledger[w] + 1));
  }
  auto body_words = capnp::messageToFlatArray(body);
  auto body_bytes = body_words.asBytes();

  capnp::MallocMessageBuilder head;
  auto h = head.initRoot<schema::FileHeader>();
  h.setMagic(file_magic);
  h.setFormatVersion(format_version);
  h.setKind(snapshot_kind);
  h.setCrc32(crc_of(body_bytes.begin(), body_bytes.size()));
  h.setBodyBytes(body_bytes.size());
  auto head_words = capnp::messageToFlatArray(head);
  auto head_bytes = head_words.asBytes();

  const auto tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw snapshot_error(
        fmt::format("{}: cannot create: {}", tmp, std::strerror(errno)));
  try {
    write_all(fd, head_bytes.begin(), head_bytes.size(), tmp);
    write_all(fd, body_bytes.begin(), body_bytes.size(), tmp);
    if (::fsync(fd) != 0)
      throw snapshot_error(
          fmt::format("{}: cannot sync: {}", tmp, std::strerror(errno)));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw snapshot_error(fmt::format("{}: cannot rename {} to it: {}", path,
                                     tmp, std::strerror(err)));
  }
  // The rename itself must survive a crash: sync the directory.
  const auto slash = path.rfind('/');
  const auto dir = slash == std::string::npos ? std::string(".")
                   : slash == 0               ? std::string("/")
                                              : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

shard_snapshot read_snapshot_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw snapshot_error(
        fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  if (bytes.size() % sizeof(capnp::word) != 0 || bytes.size() < 16)
    throw snapshot_error(fmt::format(
        "{}: truncated or not a snapshot ({} bytes)", path, bytes.size()));
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  capnp::ReaderOptions opts;
  opts.traversalLimitInWords = 1ull << 40;
  try {
    kj::ArrayPtr<const capnp::word> rest = words.asPtr();
    capnp::FlatArrayMessageReader head(rest, opts);
    auto h = head.getRoot<schema::FileHeader>();
    if (h.getMagic() != file_magic)
      throw snapshot_error(
          fmt::format("{}: not a troupe file (bad magic)", path));
    if (h.getFormatVersion() != format_version)
      throw snapshot_error(fmt::format("{}: format version {}, expected {}",
                                       path, h.getFormatVersion(),
                                       format_version));
    if (std::string(h.getKind().cStr()) != snapshot_kind)
      throw snapshot_error(fmt::format("{}: a {} file, not a snapshot", path,
                                       h.getKind().cStr()));
    const auto* body_begin = head.getEnd();
    const auto body_bytes = static_cast<std::size_t>(words.end() - body_begin) *
                            sizeof(capnp::word);
    if (body_bytes != h.getBodyBytes())
      throw snapshot_error(fmt::format(
          "{}: truncated or padded: the body has {} bytes, the header says {}",
          path, body_bytes, h.getBodyBytes()));
    if (crc_of(reinterpret_cast<const std::uint8_t*>(body_begin), body_bytes) !=
        h.getCrc32())
      throw snapshot_error(
          fmt::format("{}: checksum mismatch (the file is corrupt)", path));
    capnp::FlatArrayMessageReader body(
        kj::ArrayPtr<const capnp::word>(body_begin, words.end()), opts);
    auto r = body.getRoot<schema::ParamShardSnapshot>();
    shard_snapshot s;
    s.shard = static_cast<std::int32_t>(r.getShard());
    s.version = static_cast<std::int64_t>(r.getVersion());
    s.offset = static_cast<std::int64_t>(r.getParams().getOffset());
    s.total = static_cast<std::int64_t>(r.getParams().getTotal());
    s.job = r.getJob().cStr();
    s.params = read_tensor(r.getParams().getValues(), path, "params");
    for (auto t : r.getOptimizerState())
      s.optimizer_state.push_back(read_tensor(t, path, "optimizer state"));
    auto steps = r.getAppliedSteps();
    if (r.getAppliedWorkers().size() != steps.size())
      throw snapshot_error(
          fmt::format("{}: ledger lists differ in size", path));
    for (auto v : steps)
      s.ledger.push_back(static_cast<std::int64_t>(v) - 1);
    if (s.params.numel() <= 0 || s.offset < 0 ||
        s.offset + s.params.numel() > s.total)
      throw snapshot_error(
          fmt::format("{}: params [{}, {}) do not fit a model of {}", path,
                      s.offset, s.offset + s.params.numel(), s.total));
    for (const auto& t : s.optimizer_state)
      if (t.numel() != s.params.numel())
        throw snapshot_error(
            fmt::format("{}: optimizer state of {} elements for {} parameters",
                        path, t.numel(), s.params.numel()));
    return s;
  } catch (const kj::Exception& e) {
    throw snapshot_error(
        fmt::format("{}: malformed: {}", path, e.getDescription().cStr()));
  }
}

} // namespace troupe::runtime

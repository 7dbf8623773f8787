#include "data/dataset.hpp"

#include <zlib.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

namespace troupe::data {

namespace {

struct gz_closer {
  void operator()(gzFile f) const { gzclose(f); }
};
using gz_ptr = std::unique_ptr<gzFile_s, gz_closer>;

// An IDX file: big-endian header (0, 0, type, rank, dims...) then the data.
struct idx_file {
  std::string path;
  int rank = 0;
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> bytes;
};

std::string base_name(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

// Reads exactly n bytes or explains why not. `before` bytes of the same
// item (of `whole`, 0: n) were read already, for the message.
void read_exact(gzFile f, const std::string& path, void* out, std::size_t n,
                const char* what, std::size_t before = 0,
                std::size_t whole = 0) {
  auto* p = static_cast<unsigned char*>(out);
  std::size_t got = 0;
  if (whole == 0)
    whole = n;
  while (got < n) {
    const auto chunk =
        static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
    const int r = gzread(f, p + got, chunk);
    if (r < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      if (err == Z_BUF_ERROR)
        throw data_error(fmt::format(
            "{}: truncated: the compressed stream ends inside {} ({} of {} "
            "bytes read)",
            path, what, got, n));
      throw data_error(
          fmt::format("{}: cannot read {}: {}", path, what,
                      err == Z_ERRNO ? std::strerror(errno) : msg));
    }
    if (r == 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      throw data_error(fmt::format(
          "{}: truncated: {} needs {} bytes but the file ends after {}{}", path,
          what, whole, before + got,
          err != Z_OK && err != Z_STREAM_END ? fmt::format(" ({})", msg) : ""));
    }
    got += static_cast<std::size_t>(r);
  }
}

idx_file read_idx_file(const std::string& path) {
  gz_ptr f(gzopen(path.c_str(), "rb"));
  if (!f)
    throw data_error(
        fmt::format("{}: cannot open: {}", path,
                    errno != 0 ? std::strerror(errno) : "unknown error"));
  gzbuffer(f.get(), 1 << 20);
  std::array<unsigned char, 4> magic{};
  read_exact(f.get(), path, magic.data(), 4, "the IDX magic number");
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 1 ||
      magic[3] > 4)
    throw data_error(fmt::format(
        "{}: not an IDX file of unsigned bytes: magic is {:02x} {:02x} {:02x} "
        "{:02x}, expected 00 00 08 then a rank of 1..4",
        path, magic[0], magic[1], magic[2], magic[3]));
  idx_file out;
  out.path = path;
  out.rank = magic[3];
  std::int64_t total = 1;
  for (int i = 0; i < out.rank; ++i) {
    std::array<unsigned char, 4> d{};
    read_exact(f.get(), path, d.data(), 4, "the IDX dimensions");
    const std::int64_t v =
        (std::int64_t{d[0]} << 24) | (d[1] << 16) | (d[2] << 8) | d[3];
    if (v <= 0 || v > (1 << 28))
      throw data_error(
          fmt::format("{}: IDX dimension {} is {}, out of range", path, i, v));
    total *= v;
    if (total > (std::int64_t{1} << 34))
      throw data_error(
          fmt::format("{}: IDX data of {} bytes is too large", path, total));
    out.dims.push_back(v);
  }
  // The header's sizes are only a claim: a plain file must hold them, and a
  // compressed one is read in pieces, so memory follows the data there is,
  // not what a header declares.
  std::error_code ec;
  const auto on_disk = std::filesystem::file_size(path, ec);
  const auto header = 4 + 4 * static_cast<std::uintmax_t>(out.rank);
  if (!gzdirect(f.get()) || ec) {
    // compressed (or not a regular file): below
  } else if (on_disk < header + static_cast<std::uintmax_t>(total)) {
    throw data_error(fmt::format(
        "{}: truncated: the header declares {} bytes of IDX data but the "
        "file holds {}",
        path, total, on_disk > header ? on_disk - header : 0));
  }
  const auto whole = static_cast<std::size_t>(total);
  constexpr std::size_t piece = std::size_t{16} << 20;
  std::size_t got = 0;
  while (got < whole) {
    const auto n = std::min(piece, whole - got);
    out.bytes.resize(got + n);
    read_exact(f.get(), path, out.bytes.data() + got, n, "the IDX data", got,
               whole);
    got += n;
  }
  unsigned char extra = 0;
  if (gzread(f.get(), &extra, 1) > 0)
    throw data_error(fmt::format(
        "{}: {} bytes of IDX data are followed by more bytes than the header "
        "declares",
        path, total));
  int err = 0;
  const char* msg = gzerror(f.get(), &err);
  if (err != Z_OK && err != Z_STREAM_END)
    throw data_error(fmt::format("{}: corrupt compressed data: {}", path, msg));
  return out;
}

} // namespace

namespace {

// The samples of an image file (rank 2..4), scaled; no targets yet.
dataset images_of(idx_file&& a, float scale) {
  if (a.rank < 2)
    throw data_error(
        fmt::format("{}: expected an image file (IDX rank 2..4), got rank {}",
                    a.path, a.rank));
  const auto n = a.dims[0];
  std::int64_t features = 1;
  for (std::size_t i = 1; i < a.dims.size(); ++i)
    features *= a.dims[i];
  dataset ds;
  ds.samples = n;
  ds.features = features;
  if (a.dims.size() == 3)
    ds.sample_shape = {1, a.dims[1], a.dims[2]};
  else
    ds.sample_shape.assign(a.dims.begin() + 1, a.dims.end());
  ds.x = devices::tensor::empty({n, features});
  // byte / 255 like torchvision's ToTensor, through a table of 256 values.
  std::array<float, 256> lut{};
  for (int v = 0; v < 256; ++v)
    lut[static_cast<std::size_t>(v)] = scale > 0
                                           ? static_cast<float>(v) * scale
                                           : static_cast<float>(v) / 255.0f;
  float* x = ds.x.data();
  for (std::size_t i = 0; i < a.bytes.size(); ++i)
    x[i] = lut[a.bytes[i]];
  ds.byte_scale = scale;
  ds.bytes = std::move(a.bytes);
  ds.targets = 0;
  ds.description = fmt::format("{} ({} x {})", base_name(a.path), n, features);
  return ds;
}

} // namespace

dataset read_idx(const std::string& first, const std::string& second,
                 float scale) {
  auto a = read_idx_file(first);
  auto b = read_idx_file(second);
  if (a.rank == 1 && b.rank != 1)
    std::swap(a, b);
  if (b.rank != 1)
    throw data_error(fmt::format(
        "{}: expected a label file (IDX rank 1) beside {}, got rank {}", b.path,
        a.path, b.rank));
  if (a.rank >= 2 && b.dims[0] != a.dims[0])
    throw data_error(fmt::format(
        "{} has {} labels but {} has {} images: the counts must match", b.path,
        b.dims[0], a.path, a.dims[0]));
  const auto images = a.path;
  auto ds = images_of(std::move(a), scale);
  const auto n = ds.samples;
  ds.y = devices::tensor::empty({n});
  std::int64_t max_label = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto label = b.bytes[static_cast<std::size_t>(i)];
    ds.y.data()[i] = static_cast<float>(label);
    max_label = std::max<std::int64_t>(max_label, label);
  }
  ds.classes = max_label + 1;
  ds.targets = 1;
  ds.description =
      fmt::format("{} + {} ({} x {}, {} classes)", base_name(images),
                  base_name(b.path), n, ds.features, ds.classes);
  return ds;
}

dataset read_idx_images(const std::string& images, float scale) {
  return images_of(read_idx_file(images), scale);
}

// Division is exact in every instruction set: each clone gives the same bits.
__attribute__((target_clones("avx512f", "avx2", "default"))) void
copy_row(const dataset& ds, std::int64_t row, float* out) {
  const auto f = ds.features;
  if (ds.bytes.empty()) {
    std::memcpy(out, ds.x.data() + row * f,
                static_cast<std::size_t>(f) * sizeof(float));
    return;
  }
  // The same expressions as the table read_idx fills x from, so the values
  // are the same bits; written as a loop the compiler vectorizes.
  const std::uint8_t* in = ds.bytes.data() + row * f;
  if (ds.byte_scale > 0) {
    const float s = ds.byte_scale;
    for (std::int64_t j = 0; j < f; ++j)
      out[j] = static_cast<float>(in[j]) * s;
  } else {
    for (std::int64_t j = 0; j < f; ++j)
      out[j] = static_cast<float>(in[j]) / 255.0f;
  }
}

void prefetch_row(const dataset& ds, std::int64_t row) {
  const auto f = ds.features;
  const char* p =
      ds.bytes.empty()
          ? reinterpret_cast<const char*>(ds.x.data() + row * f)
          : reinterpret_cast<const char*>(ds.bytes.data() + row * f);
  const auto n =
      ds.bytes.empty() ? f * static_cast<std::int64_t>(sizeof(float)) : f;
  for (std::int64_t i = 0; i < n; i += 64)
    __builtin_prefetch(p + i);
  __builtin_prefetch(p + n - 1); // the last line, when p is not aligned
}

} // namespace troupe::data

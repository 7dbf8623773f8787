#pragma once
// Helpers that write small data files for the data tests.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace troupe::data::testing {

/// A fresh directory under the system temp dir, removed on destruction.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/troupe-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const {
    return (path / name).string();
  }
};

inline std::vector<std::uint8_t>
idx_bytes(std::vector<std::uint32_t> dims,
          const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> out{0, 0, 8,
                                static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8)
      out.push_back(static_cast<std::uint8_t>(d >> s));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline void write_plain(const std::string& path,
                        const std::vector<std::uint8_t>& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()),
             static_cast<std::streamsize>(b.size()));
}

inline void write_gz(const std::string& path,
                     const std::vector<std::uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, b.data(), static_cast<unsigned>(b.size()));
  gzclose(f);
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

} // namespace troupe::data::testing

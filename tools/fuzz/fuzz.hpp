#pragma once
// What every fuzz harness shares. A harness defines
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t)
// and fuzz_seeds() (valid inputs to start from). Built with libFuzzer
// (tools/fuzz/run, clang) it is coverage-guided; built with the project's
// compiler it is linked with replay_main.cpp, which runs the seeds and a
// fixed number of seeded mutations of them (the bounded run of CI).
// A harness lets through only the exceptions its reader documents; any
// other (std::bad_alloc from a declared size, std::out_of_range, ...) and
// every sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

namespace troupe::fuzz {

using bytes = std::vector<std::uint8_t>;

/// Valid inputs of the harness (defined by each harness).
std::vector<bytes> fuzz_seeds();

/// A file holding `data`, rewritten on each call (one per process and
/// `slot`), for readers that take a path.
inline std::string as_file(const std::uint8_t* data, std::size_t n,
                           int slot = 0) {
  const char* dir = std::getenv("TMPDIR");
  const std::string path = std::string(dir && *dir ? dir : "/tmp") +
                           "/troupe-fuzz-" + std::to_string(::getpid()) + "-" +
                           std::to_string(slot);
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    if (n > 0)
      std::fwrite(data, 1, n, f);
    std::fclose(f);
  }
  return path;
}

inline bytes text(const std::string& s) {
  return bytes(s.begin(), s.end());
}

} // namespace troupe::fuzz

#pragma once
// With libFuzzer: TROUPE_FUZZ_WRITE_SEEDS=DIR writes the harness's seeds
// into DIR and exits, so that tools/fuzz/run starts from valid inputs.
#include "tools/fuzz/fuzz.hpp"

#include <cstdlib>
#include <fstream>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("TROUPE_FUZZ_WRITE_SEEDS")) {
    int i = 0;
    for (const auto& s : troupe::fuzz::fuzz_seeds()) {
      std::ofstream out(std::string(dir) + "/seed-" + std::to_string(i++),
                        std::ios::binary);
      out.write(reinterpret_cast<const char*>(s.data()),
                static_cast<std::streamsize>(s.size()));
    }
    std::exit(0);
  }
  return 0;
}

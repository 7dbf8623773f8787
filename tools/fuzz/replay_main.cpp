// The bounded run without libFuzzer: each seed, then `rounds` mutations of
// the seeds (bit flips, cut tails, inserted and overwritten bytes, 32-bit
// edge values at random offsets), from a fixed PRNG seed so that a failure
// repeats. Files or directories given on the command line are run as
// inputs first (a crash's reproducer). Prints the executions done.
#include "tools/fuzz/fuzz.hpp"

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t n);

namespace {

using troupe::fuzz::bytes;

void run(const bytes& b) {
  LLVMFuzzerTestOneInput(b.data(), b.size());
}

bytes mutate(bytes b, std::mt19937_64& rng) {
  const auto pick = [&](std::size_t n) {
    return n == 0 ? 0 : static_cast<std::size_t>(rng() % n);
  };
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 5) {
      case 0:
        if (!b.empty())
          b[pick(b.size())] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        b.resize(pick(b.size() + 1));
        break;
      case 2:
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size() + 1)),
                 static_cast<std::uint8_t>(rng()));
        break;
      case 3:
        if (!b.empty())
          b[pick(b.size())] = static_cast<std::uint8_t>(rng());
        break;
      default: {
        static const std::uint32_t edges[] = {
            0,          1,          0x7f,       0x80,   0xff,
            0x7fffffff, 0x80000000, 0xffffffff, 0x10000};
        if (b.size() >= 4) {
          const auto at = pick(b.size() - 3);
          const auto v = edges[rng() % (sizeof(edges) / sizeof(edges[0]))];
          std::memcpy(b.data() + at, &v, 4);
        }
      }
    }
  }
  return b;
}

} // namespace

int main(int argc, char** argv) {
  long rounds = 2000;
  if (const char* r = std::getenv("TROUPE_FUZZ_ROUNDS"))
    rounds = std::atol(r);
  std::int64_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path p = argv[i];
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p))
        files.push_back(e.path());
    } else {
      files.push_back(p);
    }
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      run(bytes(std::istreambuf_iterator<char>(in), {}));
      ++runs;
    }
  }
  const auto seeds = troupe::fuzz::fuzz_seeds();
  for (const auto& s : seeds) {
    run(s);
    ++runs;
  }
  std::mt19937_64 rng(20261201);
  const auto t0 = std::chrono::steady_clock::now();
  for (long r = 0; r < rounds && !seeds.empty(); ++r) {
    run(mutate(seeds[static_cast<std::size_t>(r) % seeds.size()], rng));
    ++runs;
  }
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("%s: %lld executions (%zu seeds, %ld mutations) in %.2f s, no "
              "finding\n",
              argv[0], static_cast<long long>(runs), seeds.size(), rounds, s);
  return 0;
}

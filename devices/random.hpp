#pragma once
/// \file Counter-based random numbers: the value for (seed, i) never depends
/// on what was drawn before, so anything split over actors stays reproducible.
#include <cstdint>

// Usable in CUDA kernels too, so a GPU draws the same numbers.
#if defined(__CUDACC__)
#define TROUPE_HOST_DEVICE __host__ __device__
#else
#define TROUPE_HOST_DEVICE
#endif

namespace troupe::devices {

/// SplitMix64 finalizer: a bijective 64-bit mix.
TROUPE_HOST_DEVICE constexpr std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// A 64-bit value determined by (seed, stream, counter).
TROUPE_HOST_DEVICE constexpr std::uint64_t
random_bits(std::uint64_t seed, std::uint64_t counter,
            std::uint64_t stream = 0) {
  return mix64(mix64(seed ^ mix64(stream)) + counter);
}

/// Uniform float in [0, 1) with 24 random bits, exact on every platform.
TROUPE_HOST_DEVICE inline float unit_float(std::uint64_t seed,
                                           std::uint64_t counter,
                                           std::uint64_t stream = 0) {
  return static_cast<float>(random_bits(seed, counter, stream) >> 40) *
         (1.0f / 16777216.0f);
}

/// Uniform integer in [0, n) by Lemire's multiply-shift (n > 0).
__extension__ typedef unsigned __int128 uint128_t;
inline std::uint64_t uniform_below(std::uint64_t bits, std::uint64_t n) {
  return static_cast<std::uint64_t>((static_cast<uint128_t>(bits) * n) >> 64);
}

} // namespace troupe::devices

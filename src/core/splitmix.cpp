#include "loom/core/splitmix.hpp"

namespace loom {

namespace {
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;  // 2^64 / golden ratio
}  // namespace

uint64_t splitMix64(uint64_t x) {
  uint64_t z = x + kGolden;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::next() {
  const uint64_t x = state_;
  state_ += kGolden;
  return splitMix64(x);
}

uint64_t SplitMix64::below(uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const uint64_t r = next();
    if (r >= threshold) return r % bound;
  }
}

}  // namespace loom

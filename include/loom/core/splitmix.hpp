#pragma once
// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and the same on every platform, which
// std::mt19937 + std::uniform_int_distribution / std::shuffle are not (the distribution and
// the shuffle algorithm differ between standard libraries). Used wherever a seed must give
// the same order on every rank and machine (the planner's shuffle, prepare's splits).

#include <cstdint>

namespace loom {

/// One splitmix64 step from state `x`: the mixed value of x + 0x9E3779B97F4A7C15. Also a
/// good 64-bit hash of `x`.
uint64_t splitMix64(uint64_t x);

/// The splitmix64 stream from `seed`: next() is splitMix64(seed), splitMix64(seed + golden),
/// ... Its values are part of the planner's on-disk contract (the same seed must give the
/// same order in every version), so the algorithm never changes.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  /// Uniform in [0, bound), bound > 0, without modulo bias (rejects the short last cycle).
  uint64_t below(uint64_t bound);

 private:
  uint64_t state_;
};

}  // namespace loom

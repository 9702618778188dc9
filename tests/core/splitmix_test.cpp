// core/splitmix: the stream's values are a contract (the planner's order on disk and across
// versions), so they are pinned to the reference implementation's numbers.

#include "loom/core/splitmix.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace loom {
namespace {

// From Vigna's splitmix64.c with x = 0: the first outputs of the stream seeded with 0.
TEST(SplitMix, StreamMatchesTheReference) {
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(rng.next(), 0x06C45D188009454FULL);
}

TEST(SplitMix, OneStepIsTheStreamsFirstValue) {
  for (uint64_t seed : {0ULL, 1ULL, 42ULL, 0xFFFFFFFFFFFFFFFFULL}) {
    EXPECT_EQ(splitMix64(seed), SplitMix64(seed).next()) << seed;
  }
}

TEST(SplitMix, BelowStaysInRangeAndReachesEveryValue) {
  SplitMix64 rng(7);
  std::vector<int> seen(5, 0);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t r = rng.below(5);
    ASSERT_LT(r, 5u);
    ++seen[r];
  }
  for (int count : seen) EXPECT_GT(count, 150);
  EXPECT_EQ(rng.below(1), 0u);
}

}  // namespace
}  // namespace loom

// The balancer's arithmetic against closed forms: weights proportional to tokens/s measured
// over a window of steps (ratio of sums), re-weighting every `every` steps, and only when the
// predicted step time improves by more than `min_gain`.
#include "loom/train/balancer.hpp"

#include <gtest/gtest.h>

#include <numeric>

namespace loom {
namespace {

TEST(Balancer, StaticNeverChangesTheWeights) {
  Balancer b({3, 1}, /*adaptive=*/false);
  EXPECT_FALSE(b.observe(0, {1.0, 10.0}, {300, 100}));
  EXPECT_EQ(b.weights(), (std::vector<double>{3, 1}));
}

TEST(Balancer, WeightsProportionalToThroughputSummingToTheWorldSize) {
  Balancer b({1, 1, 1}, /*adaptive=*/true, /*every=*/1);
  // Rates: 100, 300, 600 tokens/s. Weights are normalised to sum to the number of ranks.
  EXPECT_TRUE(b.observe(0, {1.0, 1.0, 0.5}, {100, 300, 300}));
  const auto& w = b.weights();
  ASSERT_EQ(w.size(), 3u);
  EXPECT_DOUBLE_EQ(w[0], 3.0 * 100 / 1000);
  EXPECT_DOUBLE_EQ(w[1], 3.0 * 300 / 1000);
  EXPECT_DOUBLE_EQ(w[2], 3.0 * 600 / 1000);
  EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0), 3.0, 1e-12);
}

TEST(Balancer, ChecksEveryNStepsWithTheWindowsRatioOfSums) {
  Balancer b({1, 1}, true, /*every=*/3, /*window=*/2);
  // Rank 1 is 3x faster. Only the third observation may re-weight.
  EXPECT_FALSE(b.observe(0, {1.0, 1.0}, {100, 100}));
  EXPECT_FALSE(b.observe(1, {1.0, 1.0}, {100, 300}));
  // Window = the last two steps. Rank 1: (300 + 300) tokens / (1 + 0.5) s = 400 tokens/s, not
  // the mean of the per-step rates (450): a long step counts by its length.
  EXPECT_TRUE(b.observe(2, {1.0, 0.5}, {100, 150}));
  EXPECT_DOUBLE_EQ(b.throughput()[0], 100.0);
  EXPECT_DOUBLE_EQ(b.throughput()[1], (300.0 + 150.0) / 1.5);
  EXPECT_DOUBLE_EQ(b.weights()[0], 2.0 * 100 / 400);
  EXPECT_DOUBLE_EQ(b.weights()[1], 2.0 * 300 / 400);
}

TEST(Balancer, RelativeStepTimeOfASplit) {
  // Rates 100 and 300: the best split is 1:3 (relative time 1). Equal weights give rank 0 half
  // of the batch at a quarter of the total rate: 0.5 / 100 * 400 = 2 times the best.
  EXPECT_DOUBLE_EQ(Balancer::relativeStepTime({1, 3}, {100, 300}), 1.0);
  EXPECT_DOUBLE_EQ(Balancer::relativeStepTime({1, 1}, {100, 300}), 2.0);
  EXPECT_DOUBLE_EQ(Balancer::relativeStepTime({0.5, 1.5}, {100, 300}), 1.0);
  // A rank without a share does not count.
  EXPECT_DOUBLE_EQ(Balancer::relativeStepTime({0, 2}, {100, 300}), 4.0 / 3.0);
}

TEST(Balancer, ChangesThatWouldNotShortenTheStepAreIgnored) {
  Balancer b({1, 1}, true, /*every=*/1, /*window=*/1, /*min_gain=*/0.01);
  // Rates 495 and 505: equal weights are 0.5 / 495 * 1000 = 1.0101 of the best step: a gain
  // just over 1%, re-weighted.
  EXPECT_TRUE(b.observe(0, {1.0, 1.0}, {495, 505}));
  EXPECT_DOUBLE_EQ(b.weights()[0], 0.99);
  // Now 498 : 502 against weights 0.99 : 1.01: 0.505 / 502 * 1000 = 1.00598, under 1%: kept.
  EXPECT_FALSE(b.observe(1, {1.0, 1.0}, {498, 502}));
  EXPECT_DOUBLE_EQ(b.weights()[0], 0.99);
  // A 10% swing pays: re-weighted.
  EXPECT_TRUE(b.observe(2, {1.0, 1.0}, {400, 600}));
  EXPECT_DOUBLE_EQ(b.weights()[1], 1.2);
}

TEST(Balancer, ARankWithoutWorkIsNotMeasured) {
  Balancer b({1, 1}, true, /*every=*/1, /*window=*/1);
  // Rank 1 had no tokens: no rate for it yet, so no re-weighting.
  EXPECT_FALSE(b.observe(0, {1.0, 0.0}, {100, 0}));
  EXPECT_EQ(b.throughput()[1], 0.0);
  EXPECT_TRUE(b.observe(1, {1.0, 1.0}, {100, 300}));
  EXPECT_DOUBLE_EQ(b.weights()[1], 2.0 * 300 / 400);
  // Later, with no work in the window, it keeps its last rate.
  EXPECT_FALSE(b.observe(2, {1.0, 0.0}, {100, 0}));
  EXPECT_DOUBLE_EQ(b.throughput()[1], 300.0);
}

TEST(Balancer, TheStartProbeSetsWeightsUntilStepsAreMeasured) {
  Balancer b({3, 1}, true, /*every=*/2, /*window=*/10);
  EXPECT_TRUE(b.probe({200, 600}));
  EXPECT_DOUBLE_EQ(b.weights()[0], 2.0 * 200 / 800);
  EXPECT_DOUBLE_EQ(b.weights()[1], 2.0 * 600 / 800);
  // The first step alone does not move the probe's weights (checks every 2 steps)...
  EXPECT_FALSE(b.observe(0, {1.0, 1.0}, {400, 600}));
  EXPECT_DOUBLE_EQ(b.weights()[0], 0.5);
  // ...the second does, from both steps' sums: 800 / 2 s = 400 and 1200 / 2 s = 600.
  EXPECT_TRUE(b.observe(1, {1.0, 1.0}, {400, 600}));
  EXPECT_DOUBLE_EQ(b.throughput()[0], 400.0);
  EXPECT_DOUBLE_EQ(b.weights()[0], 2.0 * 400 / 1000);
  EXPECT_ANY_THROW(b.probe({1.0, 0.0}));
  Balancer fixed({3, 1}, false);
  EXPECT_FALSE(fixed.probe({100, 900}));
  EXPECT_EQ(fixed.weights(), (std::vector<double>{3, 1}));
}

TEST(Balancer, SetWeightsChecksTheWorldSize) {
  Balancer b({1, 1}, true);
  b.setWeights({0.5, 1.5});
  EXPECT_EQ(b.weights(), (std::vector<double>{0.5, 1.5}));
  EXPECT_ANY_THROW(b.setWeights({1, 1, 1}));
}

}  // namespace
}  // namespace loom

// The balancer's arithmetic against closed forms: weights proportional to smoothed
// tokens/s, re-weighting after the probe step and every `every` steps, a dead band.
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

TEST(Balancer, TheProbeStepSetsWeightsProportionalToThroughput) {
  Balancer b({1, 1, 1}, /*adaptive=*/true, /*every=*/5, /*smoothing=*/0.5);
  // Rates: 100, 300, 600 tokens/s. Weights are normalised to sum to the number of ranks.
  EXPECT_TRUE(b.observe(0, {1.0, 1.0, 0.5}, {100, 300, 300}));
  const auto& w = b.weights();
  ASSERT_EQ(w.size(), 3u);
  EXPECT_DOUBLE_EQ(w[0], 3.0 * 100 / 1000);
  EXPECT_DOUBLE_EQ(w[1], 3.0 * 300 / 1000);
  EXPECT_DOUBLE_EQ(w[2], 3.0 * 600 / 1000);
  EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0), 3.0, 1e-12);
}

TEST(Balancer, ReweightsEveryNStepsFromTheMovingAverage) {
  Balancer b({1, 1}, true, /*every=*/3, /*smoothing=*/0.5);
  // The probe measures equal rates: the weights are already right, nothing changes.
  ASSERT_FALSE(b.observe(0, {1.0, 1.0}, {100, 100}));
  // Rank 1 becomes 3x faster. Observations 2 and 3: the third triggers a re-weight.
  EXPECT_FALSE(b.observe(1, {1.0, 1.0}, {100, 300}));
  EXPECT_TRUE(b.observe(2, {1.0, 1.0}, {100, 300}));
  // EMA of rank 1: 100 -> 0.5*100+0.5*300 = 200 -> 0.5*200+0.5*300 = 250; rank 0 stays 100.
  EXPECT_DOUBLE_EQ(b.throughput()[0], 100.0);
  EXPECT_DOUBLE_EQ(b.throughput()[1], 250.0);
  EXPECT_DOUBLE_EQ(b.weights()[0], 2.0 * 100 / 350);
  EXPECT_DOUBLE_EQ(b.weights()[1], 2.0 * 250 / 350);
}

TEST(Balancer, SmallChangesAreIgnored) {
  Balancer b({1, 1}, true, /*every=*/1, /*smoothing=*/0.0, /*min_change=*/0.05);
  // Shares would move from 50% to 51%: a 2% relative change, under the 5% dead band.
  EXPECT_FALSE(b.observe(0, {1.0, 1.0}, {490, 510}));
  EXPECT_EQ(b.weights(), (std::vector<double>{1, 1}));
  EXPECT_TRUE(b.observe(1, {1.0, 1.0}, {400, 600}));  // 50% -> 60%: 20%
  EXPECT_DOUBLE_EQ(b.weights()[1], 1.2);
}

TEST(Balancer, ARankWithoutWorkIsNotMeasured) {
  Balancer b({1, 1}, true, /*every=*/1, /*smoothing=*/0.5);
  // Rank 1 had no tokens: no rate for it yet, so no re-weighting.
  EXPECT_FALSE(b.observe(0, {1.0, 0.0}, {100, 0}));
  EXPECT_EQ(b.throughput()[1], 0.0);
  EXPECT_TRUE(b.observe(1, {1.0, 1.0}, {100, 300}));
  EXPECT_DOUBLE_EQ(b.weights()[1], 2.0 * 300 / 400);
}

TEST(Balancer, TheStartProbeSetsWeightsAndSeedsTheAverage) {
  Balancer b({3, 1}, true, /*every=*/2, /*smoothing=*/0.5);
  EXPECT_TRUE(b.probe({200, 600}));
  EXPECT_DOUBLE_EQ(b.weights()[0], 2.0 * 200 / 800);
  EXPECT_DOUBLE_EQ(b.weights()[1], 2.0 * 600 / 800);
  // The first training step's rate is averaged with the probe's: 0.5*200 + 0.5*400 = 300.
  EXPECT_TRUE(b.observe(0, {1.0, 1.0}, {400, 600}));
  EXPECT_DOUBLE_EQ(b.throughput()[0], 300.0);
  EXPECT_DOUBLE_EQ(b.throughput()[1], 600.0);
  EXPECT_DOUBLE_EQ(b.weights()[0], 2.0 * 300 / 900);
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

// The reference for dynamic loss scaling is torch's own update rule, at::_amp_update_scale_
// (what torch.amp.GradScaler.update calls), fed the same overflow sequence.
#include "loom/train/loss_scaler.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <random>

namespace loom {
namespace {

TEST(LossScaler, FollowsTorchGradScalerOnARandomOverflowSequence) {
  const double growth = 2.0, backoff = 0.5;
  const int64_t interval = 2;  // short, so growth happens often
  LossScaler scaler(1024.0, growth, backoff, interval);
  torch::Tensor scale = torch::full({1}, 1024.0f);
  torch::Tensor tracker = torch::zeros({1}, torch::kInt);
  std::mt19937 rng(17);
  int overflows = 0, growths = 0;
  for (int step = 0; step < 300; ++step) {
    const bool finite = rng() % 6 != 0;  // 1 in 6 steps overflows
    const double before = scaler.scale();
    const bool applied = scaler.update(finite);
    at::_amp_update_scale_(scale, tracker, torch::full({1}, finite ? 0.0f : 1.0f), growth, backoff,
                           interval);
    EXPECT_EQ(applied, finite) << "step " << step;
    EXPECT_DOUBLE_EQ(scaler.scale(), scale.item<float>()) << "step " << step;
    EXPECT_EQ(scaler.goodSteps(), tracker.item<int>()) << "step " << step;
    overflows += finite ? 0 : 1;
    growths += scaler.scale() > before ? 1 : 0;
    ASSERT_GT(scaler.scale(), 1.0) << "the sequence should stay above Loom's floor";
  }
  EXPECT_GT(overflows, 30);
  EXPECT_GT(growths, 10);
}

TEST(LossScaler, BacksOffBelowOneToItsFloorAndReportsIt) {
  // A summed loss can overflow fp16 even unscaled: the scale goes below 1, as GradScaler's
  // does, down to 2^-24, where non-finite values are the model's, not the scaling's.
  LossScaler scaler = LossScaler::dynamic();
  EXPECT_TRUE(scaler.enabled());
  EXPECT_EQ(scaler.scale(), 65536.0);
  for (int i = 0; i < 16; ++i) EXPECT_FALSE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 1.0);
  EXPECT_FALSE(scaler.atFloor());
  EXPECT_FALSE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 0.5);
  for (int i = 0; i < 30; ++i) scaler.update(false);
  EXPECT_EQ(scaler.scale(), LossScaler::kMinScale);
  EXPECT_EQ(scaler.scale(), std::exp2(-24));
  EXPECT_TRUE(scaler.atFloor());
  for (int i = 0; i < 1999; ++i) EXPECT_TRUE(scaler.update(true));
  EXPECT_EQ(scaler.scale(), LossScaler::kMinScale);
  EXPECT_TRUE(scaler.update(true));  // the 2000th good step in a row doubles it
  EXPECT_EQ(scaler.scale(), 2 * LossScaler::kMinScale);
}

TEST(LossScaler, OneScaleForTheWorldWhenAnyRankIsFp16) {
  EXPECT_TRUE(LossScaler::forWorld(true).enabled());
  EXPECT_EQ(LossScaler::forWorld(true).scale(), 65536.0);
  EXPECT_FALSE(LossScaler::forWorld(false).enabled());
  EXPECT_EQ(LossScaler::forWorld(false).scale(), 1.0);
}

TEST(LossScaler, DisabledKeepsOneAndOnlyReports) {
  LossScaler scaler = LossScaler::disabled();
  EXPECT_FALSE(scaler.enabled());
  EXPECT_FALSE(scaler.update(false));
  EXPECT_TRUE(scaler.update(true));
  EXPECT_EQ(scaler.scale(), 1.0);
}

TEST(LossScaler, RestoreContinuesTheGrowthCount) {
  LossScaler a(8.0, 2.0, 0.5, 4);
  for (int i = 0; i < 3; ++i) a.update(true);
  LossScaler b(1024.0, 2.0, 0.5, 4);
  b.restore(a.scale(), a.goodSteps());
  a.update(true);
  b.update(true);
  EXPECT_EQ(a.scale(), 16.0);
  EXPECT_EQ(b.scale(), a.scale());
}

}  // namespace
}  // namespace loom

#include "loom/train/schedule.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace loom {
namespace {

TEST(Schedule, WarmupIsLinearAndStartsAboveZero) {
  for (auto s : {LrSchedule::kCosine, LrSchedule::kLinear, LrSchedule::kConstant}) {
    EXPECT_DOUBLE_EQ(learningRate(s, 1e-3, 4, 100, 0), 0.25e-3);
    EXPECT_DOUBLE_EQ(learningRate(s, 1e-3, 4, 100, 3), 1e-3);
  }
}

TEST(Schedule, CosineLinearConstantClosedForms) {
  const double peak = 2e-4;
  const int64_t warmup = 10, total = 110;
  for (int64_t step = warmup; step <= total + 5; ++step) {
    const double p = std::min(1.0, (step - warmup) / 100.0);
    EXPECT_NEAR(learningRate(LrSchedule::kCosine, peak, warmup, total, step),
                peak * 0.5 * (1 + std::cos(M_PI * p)), 1e-15);
    EXPECT_NEAR(learningRate(LrSchedule::kLinear, peak, warmup, total, step), peak * (1 - p),
                1e-15);
    EXPECT_DOUBLE_EQ(learningRate(LrSchedule::kConstant, peak, warmup, total, step), peak);
  }
  EXPECT_DOUBLE_EQ(learningRate(LrSchedule::kCosine, peak, warmup, total, 60), peak * 0.5);
  EXPECT_NEAR(learningRate(LrSchedule::kCosine, peak, 0, 100, 100), 0.0, 1e-20);
}

}  // namespace
}  // namespace loom

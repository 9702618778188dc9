// The chunked cross-entropy sum against a plain one, and the next-token target convention.

#include "loom/model/loss.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model_test_util.hpp"

namespace loom {
namespace {

using testing::maxRelDiff;

TEST(Loss, ChunkedCrossEntropyEqualsPlainInValueAndGradient) {
  torch::manual_seed(0);
  auto hidden = torch::randn({37, 16}, torch::requires_grad());
  auto weight = torch::randn({50, 16}, torch::requires_grad());
  auto targets = torch::randint(0, 50, {37}, torch::kLong);

  auto plain = torch::nn::functional::cross_entropy(
      torch::matmul(hidden, weight.t()), targets,
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  auto g = torch::autograd::grad({plain}, {hidden, weight});
  for (int64_t chunk : {1, 8, 37, 1000}) {
    auto chunked = chunkedCrossEntropySum(hidden, weight, targets, chunk);
    auto gc = torch::autograd::grad({chunked}, {hidden, weight});
    const double dv = maxRelDiff(chunked, plain);
    const double dh = maxRelDiff(gc[0], g[0]), dw = maxRelDiff(gc[1], g[1]);
    std::cout << "chunk " << chunk << ": rel diff value " << dv << " grad_h " << dh << " grad_w "
              << dw << "\n";
    EXPECT_LE(dv, 1e-6);
    EXPECT_LE(dh, 1e-6);
    EXPECT_LE(dw, 1e-6);
  }
}

TEST(Loss, GradientsMadeInForwardFollowTheLossScaleAndGradOut) {
  // The loss makes its gradients in forward for grad_scale * sum; backward multiplies by
  // grad_out / grad_scale. Back-propagating sum * 1024 with grad_scale 1024 must give 1024x
  // the unscaled gradients (exactly: powers of two), and another grad_out (3.0) must still
  // give exact gradients (to fp32 rounding of one multiply, 1e-7).
  torch::manual_seed(2);
  auto hidden = torch::randn({21, 8}, torch::requires_grad());
  auto weight = torch::randn({30, 8}, torch::requires_grad());
  auto targets = torch::randint(0, 30, {21}, torch::kLong);
  auto g1 =
      torch::autograd::grad({chunkedCrossEntropySum(hidden, weight, targets, 5)}, {hidden, weight});
  auto scaled = chunkedCrossEntropySum(hidden, weight, targets, 5, 1024.0);
  auto g1024 = torch::autograd::grad({scaled * 1024.0}, {hidden, weight});
  EXPECT_TRUE(torch::equal(g1024[0], g1[0] * 1024.0));
  EXPECT_TRUE(torch::equal(g1024[1], g1[1] * 1024.0));
  auto other = chunkedCrossEntropySum(hidden, weight, targets, 5, 1024.0);
  auto g3 = torch::autograd::grad({other * 3.0}, {hidden, weight});
  EXPECT_LE(maxRelDiff(g3[0], g1[0] * 3.0), 1e-6);
  EXPECT_LE(maxRelDiff(g3[1], g1[1] * 3.0), 1e-6);
  // Without grad mode nothing is prepared and the value is the same.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(chunkedCrossEntropySum(hidden, weight, targets, 5), scaled));
}

TEST(Loss, OnlyFrozenWeightStillGivesHiddenGradient) {
  auto hidden = torch::randn({5, 4}, torch::requires_grad());
  auto weight = torch::randn({9, 4});
  auto loss = chunkedCrossEntropySum(hidden, weight, torch::randint(0, 9, {5}, torch::kLong), 2);
  loss.backward();
  EXPECT_TRUE(hidden.grad().defined());
}

TEST(Loss, TargetsAreNextTokensOfTheSameDocumentUnderTheLossMask) {
  // One row: documents [0 0 0 1 1 1], loss_mask [0 1 1 1 0 1].
  auto tokens = torch::tensor({10, 11, 12, 20, 21, 22}, torch::kLong).unsqueeze(0);
  auto mask = torch::tensor({0, 1, 1, 1, 0, 1}, torch::kLong).unsqueeze(0);
  auto docs = torch::tensor({0, 0, 0, 1, 1, 1}, torch::kLong).unsqueeze(0);
  auto t = nextTokenTargets(tokens, mask, docs);
  // position 0 -> 11, 1 -> 12, (2 -> 20 crosses documents), (3 -> 21 masked), 4 -> 22.
  EXPECT_TRUE(torch::equal(t.positions, torch::tensor({0, 1, 4}, torch::kLong)));
  EXPECT_TRUE(torch::equal(t.targets, torch::tensor({11, 12, 22}, torch::kLong)));
  // Without documents the boundary is crossed.
  auto u = nextTokenTargets(tokens, mask, {});
  EXPECT_TRUE(torch::equal(u.positions, torch::tensor({0, 1, 2, 4}, torch::kLong)));
}

}  // namespace
}  // namespace loom

// model/fused_ops on the CPU: swiglu against the composition silu(gate) * up it replaces.
// It runs the same ops on the same values, so equality is exact, not within a tolerance.
// (What it keeps for backward is measured in tests/train/cpu_memory_test; the CUDA RMSNorm in
// fused_ops_gpu_test.)

#include "loom/model/fused_ops.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace loom {
namespace {

TEST(FusedOps, SwigluEqualsTheCompositionBitForBit) {
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    torch::manual_seed(3);
    const auto g0 = torch::randn({3, 7, 96}).to(dtype);
    const auto u0 = torch::randn({3, 7, 96}).to(dtype);
    const auto dy = torch::randn({3, 7, 96}).to(dtype);
    auto g1 = g0.clone().requires_grad_(), u1 = u0.clone().requires_grad_();
    auto g2 = g0.clone().requires_grad_(), u2 = u0.clone().requires_grad_();
    const auto fused = swiglu(g1, u1);
    const auto plain = at::silu(g2) * u2;
    EXPECT_TRUE(torch::equal(fused, plain)) << dtype;
    fused.backward(dy);
    plain.backward(dy);
    EXPECT_TRUE(torch::equal(g1.grad(), g2.grad())) << dtype;
    EXPECT_TRUE(torch::equal(u1.grad(), u2.grad())) << dtype;
    EXPECT_GT(g1.grad().abs().sum().item<double>(), 0.0);
  }
}

TEST(FusedOps, SwigluGivesOnlyTheGradientsAsked) {
  // A frozen gate (no LoRA on gate_proj) or a frozen up: the other still gets its gradient.
  torch::manual_seed(4);
  const auto g = torch::randn({5, 32}), dy = torch::randn({5, 32});
  auto u = torch::randn({5, 32}).requires_grad_();
  swiglu(g, u).backward(dy);
  EXPECT_TRUE(torch::allclose(u.grad(), dy * at::silu(g), 0, 0));
  auto g2 = g.clone().requires_grad_();
  const auto u2 = u.detach();
  swiglu(g2, u2).backward(dy);
  EXPECT_TRUE(torch::equal(g2.grad(), at::silu_backward(dy * u2, g)));
  // No gradient wanted: no graph.
  EXPECT_FALSE(swiglu(g, u2).requires_grad());
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(swiglu(g2, u).requires_grad());
}

}  // namespace
}  // namespace loom

// Label gpu: model/fused_ops on CUDA. RMSNorm through torch's fused kernel against the
// composition (transformers' order of operations) on the same inputs: output and the
// gradients of x and of the weight. swiglu against its composition, bit for bit (the same
// ops). Skips without a CUDA device.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/model/fused_ops.hpp"
#include "model_test_util.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

using testing::maxRelDiff;

TEST(FusedOpsGpu, FusedRmsNormEqualsTheCompositionWithinOneRounding) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const c10::Device cuda(c10::kCUDA, 0);
  // The fused kernel scales by the weight before its one rounding to the dtype; the
  // composition rounds the normalised value, then the product: the outputs differ by about
  // one rounding (bf16: 2^-8 = 3.9e-3 relative, fp16 2^-11, fp32 ~1e-7 from summation order).
  // The gradients go through a few more such roundings and a reduction over rows (the
  // weight's): bound 4 roundings. A wrong eps, a missing weight or a mean over the wrong
  // dimension moves them by far more (>1e-1).
  struct Case {
    at::ScalarType dtype;
    double bound;
  };
  for (const Case c :
       {Case{at::kBFloat16, 4 * 3.9e-3}, Case{at::kHalf, 4 * 4.9e-4}, Case{at::kFloat, 1e-5}}) {
    torch::manual_seed(5);
    const auto x0 = torch::randn({4, 300, 2048}) * 3;
    const auto w0 = 1 + 0.1 * torch::randn({2048});
    const auto dy = torch::randn({4, 300, 2048});
    auto x1 = x0.to(cuda, c.dtype).requires_grad_(), w1 = w0.to(cuda, c.dtype).requires_grad_();
    auto x2 = x0.to(cuda, c.dtype).requires_grad_(), w2 = w0.to(cuda, c.dtype).requires_grad_();
    const auto fused = rmsNorm(x1, w1, 1e-6);
    const auto plain = rmsNormComposite(x2, w2, 1e-6);
    EXPECT_EQ(fused.scalar_type(), c.dtype);
    fused.backward(dy.to(cuda, c.dtype));
    plain.backward(dy.to(cuda, c.dtype));
    const double out = maxRelDiff(fused, plain), dx = maxRelDiff(x1.grad(), x2.grad()),
                 dw = maxRelDiff(w1.grad(), w2.grad());
    std::printf("rms_norm %s fused vs composition: out %.3g, dx %.3g, dw %.3g (bound %.3g)\n",
                c10::toString(c.dtype), out, dx, dw, c.bound);
    EXPECT_LE(out, c.bound) << c.dtype;
    EXPECT_LE(dx, c.bound) << c.dtype;
    EXPECT_LE(dw, c.bound) << c.dtype;
  }
}

TEST(FusedOpsGpu, SwigluEqualsTheCompositionBitForBit) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const c10::Device cuda(c10::kCUDA, 0);
  torch::manual_seed(6);
  const auto g0 =
      torch::randn({2048, 768}, torch::TensorOptions().device(cuda).dtype(at::kBFloat16));
  const auto u0 = torch::randn_like(g0), dy = torch::randn_like(g0);
  auto g1 = g0.clone().requires_grad_(), u1 = u0.clone().requires_grad_();
  auto g2 = g0.clone().requires_grad_(), u2 = u0.clone().requires_grad_();
  const auto fused = swiglu(g1, u1);
  const auto plain = at::silu(g2) * u2;
  EXPECT_TRUE(torch::equal(fused, plain));
  fused.backward(dy);
  plain.backward(dy);
  EXPECT_TRUE(torch::equal(g1.grad(), g2.grad()));
  EXPECT_TRUE(torch::equal(u1.grad(), u2.grad()));
}

}  // namespace
}  // namespace loom

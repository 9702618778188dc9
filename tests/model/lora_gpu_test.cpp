// Label gpu: LoRA as a bf16 CUDA rank trains it (16-bit copies of A and B as the autograd
// leaves, q/k/v and gate/up reading x once through their concatenated A, addmm into the base
// output) against the fp32 reference on the CPU: hidden states and the adapters' gradients.
//
// The bound comes from the effect. The same bf16 computation on the CPU, proven bit-identical
// to casting the factors in the graph (decoder_test), differs from fp32 by its rounding, e_cpu;
// CUDA's bf16 rounds in other places (GEMM accumulation order, kernels), so it must stay within
// 3 e_cpu of fp32, the margin of bf16_parity.hpp. A branch left out, a copy not holding its
// factor's value or a gradient lost moves these by their own size (checked: the branch moves
// the hidden states by far more than 3 e_cpu).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "lora_test_models.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

using testing::maxRelDiff;

struct LoraRun {
  at::Tensor hidden;                        // fp32, CPU
  std::map<std::string, at::Tensor> grads;  // fp32, CPU, by projection and factor
};

/// Forward and backward of a fixed loss; gradients from the copies where the model has them.
LoraRun run(CausalLm& model, const at::Tensor& tokens, const at::Tensor& weights,
            const c10::Device& device) {
  const auto hidden = model.hidden({tokens.to(device), {}, {}});
  (hidden.to(at::kFloat) * weights.to(device)).sum().backward();
  LoraRun r;
  r.hidden = hidden.to(at::kFloat).cpu();
  for (auto& [path, p] : model.projections()) {
    const bool copies = p->loraComputeA().defined();
    const auto a = copies ? p->loraComputeA().grad() : p->loraA().grad();
    const auto b = copies ? p->loraComputeB().grad() : p->loraB().grad();
    EXPECT_TRUE(a.defined() && b.defined()) << path;
    if (!a.defined() || !b.defined()) continue;
    r.grads[path + ".A"] = a.to(at::kFloat).cpu();
    r.grads[path + ".B"] = b.to(at::kFloat).cpu();
  }
  return r;
}

double worstGrad(const LoraRun& x, const LoraRun& ref) {
  double worst = 0;
  for (const auto& [name, g] : ref.grads) {
    const auto it = x.grads.find(name);
    if (it == x.grads.end()) return 1e30;
    worst = std::max(worst, maxRelDiff(it->second, g));
  }
  return worst;
}

TEST(LoraGpu, Bf16ComputeCopiesOnCudaMatchTheFp32Reference) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const c10::Device cuda(c10::kCUDA, 0), cpu(c10::kCPU);
  auto source = testing::randomModel(testing::tinyConfig("qwen3"), 11);
  testing::loraProjections(*source, 12);
  torch::manual_seed(13);
  const auto tokens = torch::randint(0, 300, {2, 12}, torch::kLong);
  const auto weights = torch::randn({2, 12, 64});

  auto fp32 = testing::loraModelLike(*source, at::kFloat);
  const LoraRun ref = run(*fp32, tokens, weights, cpu);
  auto cpu16 = testing::loraModelLike(*source, at::kBFloat16);
  ASSERT_FALSE(makeLoraComputeCopies(*cpu16, at::kBFloat16).empty());
  const LoraRun on_cpu = run(*cpu16, tokens, weights, cpu);
  auto cuda16 = testing::loraModelLike(*source, at::kBFloat16, cuda);
  ASSERT_FALSE(makeLoraComputeCopies(*cuda16, at::kBFloat16).empty());
  const LoraRun on_cuda = run(*cuda16, tokens, weights, cuda);

  // Without the adapters: how far the branch moves the hidden states.
  for (auto& [path, p] : fp32->projections()) p->loraB().detach().zero_();
  const double branch = maxRelDiff(fp32->hidden({tokens, {}, {}}).detach(), ref.hidden);

  const double e_cpu = maxRelDiff(on_cpu.hidden, ref.hidden);
  const double e_cuda = maxRelDiff(on_cuda.hidden, ref.hidden);
  const double g_cpu = worstGrad(on_cpu, ref), g_cuda = worstGrad(on_cuda, ref);
  std::printf(
      "LoRA bf16 vs fp32: hidden cpu %.3g cuda %.3g (the branch moves them %.3g); "
      "adapter gradients cpu %.3g cuda %.3g\n",
      e_cpu, e_cuda, branch, g_cpu, g_cuda);
  EXPECT_GT(e_cpu, 0.0) << "the CPU side really ran in bf16";
  EXPECT_GT(branch, 10 * e_cpu) << "the adapters must matter at this bound";
  EXPECT_LE(e_cuda, 3 * e_cpu);
  EXPECT_GT(g_cpu, 0.0);
  EXPECT_LE(g_cuda, 3 * g_cpu);
  EXPECT_EQ(on_cuda.grads.size(), ref.grads.size());
}

}  // namespace
}  // namespace loom

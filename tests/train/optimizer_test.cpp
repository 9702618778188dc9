// The fused AdamW optimizer against libtorch's per-tensor torch::optim::AdamW (what Loom ran
// before, and the same update as torch.optim.AdamW), its masters for 16-bit parameters, and
// its checkpointed state.

#include "loom/train/optimizer.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "adamw_reference.hpp"
#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::adamw::expectFusedAdamWEqualsPerTensor;
using testing::adamw::gradsFor;
using testing::adamw::kLrs;
using testing::adamw::loomStep;
using testing::adamw::makeParams;
using testing::adamw::maxRelDiff;
using testing::adamw::namesFor;
using testing::adamw::referenceAdamW;
using testing::adamw::referenceStep;

TEST(Optimizer, FusedAdamWEqualsThePerTensorStepInFp32) {
  // Both compute AdamW in fp32 with the same formula; the fused kernel orders a few scalar
  // operations differently (bias corrections folded into one factor), so they agree to a
  // few fp32 ulps, far below what a wrong moment, bias correction or decay would move
  // (>= 1e-3 relative after one step at these learning rates).
  expectFusedAdamWEqualsPerTensor(c10::Device(c10::kCPU), 1e-6);
}

TEST(Optimizer, SixteenBitParametersStepOnFp32MastersAndTakeTheirRoundedValues) {
  auto params = makeParams(at::kBFloat16, 2);
  Optimizer opt(namesFor(params.size()), params, AdamWSettings{});
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(opt.masters()[i].scalar_type(), at::kFloat);
    EXPECT_FALSE(opt.masters()[i].is_same(params[i]));
  }
  // The fp32 reference steps the same fp32 values.
  std::vector<at::Tensor> ref_params;
  for (const auto& m : opt.masters()) ref_params.push_back(m.detach().clone().requires_grad_());
  auto ref = referenceAdamW(ref_params, 0.0);
  for (int k = 0; k < 3; ++k) {
    const auto grads = gradsFor(params, k);
    referenceStep(*ref, ref_params, grads, kLrs[k]);
    loomStep(opt, grads, kLrs[k]);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_LE(maxRelDiff(opt.masters()[i], ref_params[i]), 1e-6);
    EXPECT_TRUE(torch::equal(params[i], opt.masters()[i].to(at::kBFloat16)));
  }
}

TEST(Optimizer, GivenMastersAreTheOnesSteppedAndTheirCopiesFollow) {
  // LoRA in a 16-bit dtype: the parameters autograd trains are bf16 copies, their masters the
  // fp32 adapter factors the model holds. Those very tensors take the update (the adapter
  // file is written from them) with the same values as when the optimizer makes its own
  // fp32 masters, and the copies are their masters rounded after every step.
  auto factors = makeParams(at::kFloat, 4);
  std::vector<at::Tensor> copies;
  for (const auto& f : factors) copies.push_back(f.detach().to(at::kBFloat16).requires_grad_());
  std::vector<at::Tensor> own_copies;
  for (const auto& f : factors) own_copies.push_back(f.detach().to(at::kBFloat16));
  Optimizer given(namesFor(copies.size()), copies, AdamWSettings{0.9, 0.999, 1e-8, 0.1}, factors);
  // The default: fp32 masters made from the bf16 values (the fp32 digits are lost), so
  // seeded with the factors' values to step the same numbers.
  Optimizer own(namesFor(own_copies.size()), own_copies, AdamWSettings{0.9, 0.999, 1e-8, 0.1});
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < factors.size(); ++i) own.masters()[i].copy_(factors[i]);
  }
  const auto initial = factors[0].detach().clone();
  for (size_t i = 0; i < factors.size(); ++i) {
    EXPECT_TRUE(given.masters()[i].is_same(factors[i])) << "tensor " << i;
  }
  for (int k = 0; k < 3; ++k) {
    const auto grads = gradsFor(factors, k);
    loomStep(given, grads, kLrs[k]);
    loomStep(own, grads, kLrs[k]);
    for (size_t i = 0; i < factors.size(); ++i) {
      EXPECT_TRUE(torch::equal(factors[i], own.masters()[i])) << "step " << k << " tensor " << i;
      EXPECT_TRUE(torch::equal(copies[i], factors[i].to(at::kBFloat16)))
          << "step " << k << " tensor " << i;
    }
  }
  EXPECT_FALSE(torch::equal(factors[0], initial)) << "the factors themselves were stepped";
  // A master that is not a separate fp32 tensor of the parameter's shape is refused.
  auto p = makeParams(at::kBFloat16, 5);
  std::vector<at::Tensor> wrong(p.size());
  wrong[0] = torch::zeros({3, 3});
  EXPECT_THROW(Optimizer(namesFor(p.size()), p, AdamWSettings{}, wrong), Error);
  wrong[0] = torch::zeros(p[0].sizes(), torch::kBFloat16);
  EXPECT_THROW(Optimizer(namesFor(p.size()), p, AdamWSettings{}, wrong), Error);
  auto f = makeParams(at::kFloat, 6);
  std::vector<at::Tensor> itself(f.size());
  itself[1] = f[1];
  EXPECT_THROW(Optimizer(namesFor(f.size()), f, AdamWSettings{}, itself), Error);
}

TEST(Optimizer, SavedStateResumesBitForBit) {
  testing::TempDir tmp("optimizer_state");
  const fs::path dir = tmp.path();
  auto a = makeParams(at::kFloat, 3);
  Optimizer whole(namesFor(a.size()), a, AdamWSettings{0.9, 0.999, 1e-8, 0.05});
  for (int k = 0; k < 5; ++k) loomStep(whole, gradsFor(a, k), kLrs[k]);

  auto b = makeParams(at::kFloat, 3);
  {
    Optimizer first(namesFor(b.size()), b, AdamWSettings{0.9, 0.999, 1e-8, 0.05});
    for (int k = 0; k < 2; ++k) loomStep(first, gradsFor(b, k), kLrs[k]);
    first.save(dir);
  }
  Optimizer resumed(namesFor(b.size()), b, AdamWSettings{0.9, 0.999, 1e-8, 0.05});
  resumed.load(dir);
  EXPECT_EQ(resumed.steps(), 2);
  for (int k = 2; k < 5; ++k) loomStep(resumed, gradsFor(b, k), kLrs[k]);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

TEST(Optimizer, ReadsTheStateOfEarlierVersions) {
  // Loom saved torch::optim::AdamW with torch::save as optimizer.pt; such a checkpoint
  // resumes with the fused optimizer, continuing where the per-tensor one left off.
  testing::TempDir tmp("optimizer_legacy");
  const fs::path dir = tmp.path();
  auto ref_params = makeParams(at::kFloat, 4);
  auto ref = referenceAdamW(ref_params, 0.1);
  for (int k = 0; k < 3; ++k) referenceStep(*ref, ref_params, gradsFor(ref_params, k), kLrs[k]);
  torch::save(*ref, (dir / "optimizer.pt").string());

  std::vector<at::Tensor> params;
  for (const auto& p : ref_params) params.push_back(p.detach().clone().requires_grad_());
  AdamWSettings settings;
  settings.weight_decay = 0.1;
  Optimizer opt(namesFor(params.size()), params, settings);
  opt.load(dir);
  EXPECT_EQ(opt.steps(), 3);
  for (int k = 3; k < 5; ++k) {
    const auto grads = gradsFor(ref_params, k);
    referenceStep(*ref, ref_params, grads, kLrs[k]);
    loomStep(opt, grads, kLrs[k]);
  }
  for (size_t i = 0; i < params.size(); ++i) EXPECT_LE(maxRelDiff(params[i], ref_params[i]), 1e-6);
}

TEST(Optimizer, MissingOrMismatchedStateIsAnInputErrorNamingTheFile) {
  testing::TempDir tmp("optimizer_bad");
  const fs::path dir = tmp.path();
  auto params = makeParams(at::kFloat, 5);
  Optimizer opt(namesFor(params.size()), params, AdamWSettings{});
  try {
    opt.load(dir);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.safetensors or optimizer.pt"),
              std::string::npos)
        << e.what();
  }
  auto other = makeParams(at::kFloat, 5);
  other[0] = torch::zeros({3, 3}, torch::requires_grad());
  Optimizer small(namesFor(other.size()), other, AdamWSettings{});
  small.save(dir);
  try {
    opt.load(dir);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("optimizer.safetensors"), std::string::npos) << what;
    EXPECT_NE(what.find("p0.exp_avg"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace loom

#pragma once
// The AdamW reference of the optimizer tests (CPU, and the gpu test): libtorch's per-tensor
// torch::optim::AdamW with Loom's former groups, deterministic parameters and gradients, and
// the comparison of Loom's fused step against it on a device.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "loom/train/optimizer.hpp"

namespace loom::testing::adamw {

/// Parameters of the shapes a LoRA/full run trains: matrices (decayed) and vectors (not).
inline std::vector<at::Tensor> makeParams(at::ScalarType dtype, uint64_t seed,
                                          const c10::Device& device = c10::kCPU) {
  torch::manual_seed(seed);
  std::vector<at::Tensor> out;
  for (auto shape : std::vector<std::vector<int64_t>>{{16, 64}, {64, 16}, {64}, {7, 5}, {5}}) {
    out.push_back(torch::randn(shape, torch::kFloat).to(device, dtype).requires_grad_(true));
  }
  return out;
}

inline std::vector<std::string> namesFor(size_t n) {
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.push_back("p" + std::to_string(i));
  return names;
}

/// Gradients for step `k` (deterministic, of varied scales so that Adam's moments differ).
inline std::vector<at::Tensor> gradsFor(const std::vector<at::Tensor>& params, int k) {
  torch::manual_seed(1000 + k);
  std::vector<at::Tensor> out;
  for (const auto& p : params) out.push_back(torch::randn(p.sizes()) * (0.1 * (k + 1)));
  return out;
}

/// libtorch's per-tensor AdamW with Loom's former groups (decay on 2-D, none on 1-D).
inline std::unique_ptr<torch::optim::AdamW> referenceAdamW(const std::vector<at::Tensor>& params,
                                                           double wd) {
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : params) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(1e-3).weight_decay(wd)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(1e-3).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(1e-3));
}

inline void referenceStep(torch::optim::AdamW& opt, const std::vector<at::Tensor>& params,
                          const std::vector<at::Tensor>& grads, double lr) {
  for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[i].clone();
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  opt.step();
}

inline void loomStep(Optimizer& opt, const std::vector<at::Tensor>& grads, double lr) {
  for (size_t i = 0; i < grads.size(); ++i)
    opt.masters()[i].mutable_grad() = grads[i].to(opt.masters()[i].device());
  opt.step(lr);
}

inline double maxRelDiff(const at::Tensor& a, const at::Tensor& b) {
  return ((a.to(at::kDouble) - b.to(at::kDouble)).abs().max() /
          b.to(at::kDouble).abs().max().clamp_min(1e-30))
      .item<double>();
}

inline const double kLrs[] = {1e-2, 3e-3, 5e-2, 1e-3, 2e-2, 7e-3};

/// Six steps of Loom's fused AdamW on `device` against the per-tensor reference on the CPU,
/// both fp32, parameters within `bound` relative after every step.
inline void expectFusedAdamWEqualsPerTensor(const c10::Device& device, double bound) {
  auto ref_params = makeParams(at::kFloat, 1);
  auto loom_params = makeParams(at::kFloat, 1, device);
  auto ref = referenceAdamW(ref_params, 0.1);
  AdamWSettings settings;
  settings.weight_decay = 0.1;
  Optimizer opt(namesFor(loom_params.size()), loom_params, settings);
  for (int k = 0; k < 6; ++k) {
    const auto grads = gradsFor(ref_params, k);
    referenceStep(*ref, ref_params, grads, kLrs[k]);
    loomStep(opt, grads, kLrs[k]);
    for (size_t i = 0; i < ref_params.size(); ++i) {
      ASSERT_EQ(loom_params[i].device(), device);
      const double d = maxRelDiff(loom_params[i].cpu(), ref_params[i]);
      EXPECT_LE(d, bound) << "step " << k << " tensor " << i << " on " << device;
    }
  }
  EXPECT_EQ(opt.steps(), 6);
}

}  // namespace loom::testing::adamw

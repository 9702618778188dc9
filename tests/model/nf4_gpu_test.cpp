// Label gpu: NF4 on CUDA (src/model/nf4_cuda.cu) against the CPU code. Dequantization must be
// bit for bit the CPU's (both compute level * absmax in fp32 with one rounding, and round once
// to the output dtype); a QLoRA step in bf16 on the GPU must match the fp32 CPU step within bf16
// tolerance. Skips without a CUDA device.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/model/decoder.hpp"
#include "loom/model/loss.hpp"
#include "loom/model/nf4.hpp"
#include "model_test_util.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

TEST(Nf4Gpu, DequantizationEqualsTheCpuBitForBit) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const c10::Device cuda(c10::kCUDA, 0);
  torch::manual_seed(1);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{33, 7}, {1000, 65}, {2048, 6144}}) {
    for (bool dq : {true, false}) {
      const Nf4Weight cpu = quantizeNf4(torch::randn(shape) * 0.02, dq);
      const Nf4Weight gpu = cpu.to(cuda);
      EXPECT_TRUE(at::equal(nf4Absmax(gpu).cpu(), nf4Absmax(cpu)));
      for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
        const auto a = dequantizeNf4(cpu, dtype);
        const auto b = dequantizeNf4(gpu, dtype).cpu();
        ASSERT_EQ(b.sizes(), a.sizes());
        // Compare bit patterns: equal() on floats would let -0 == +0 through.
        const auto bits = [](const at::Tensor& t) {
          return t.scalar_type() == at::kFloat ? t.view(at::kInt) : t.view(at::kShort);
        };
        EXPECT_TRUE(at::equal(bits(a), bits(b)))
            << c10::str(shape) << " " << c10::toString(dtype) << " double quant " << dq;
      }
    }
  }
}

/// The tiny test model at twice its width (more than one NF4 block per row).
HfConfig gpuConfig() {
  HfConfig c = testing::tinyConfig();
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.head_dim = 32;
  return c;
}

/// A QLoRA model on `device` in `dtype` with the weights of `from` (a CPU fp32 model).
std::shared_ptr<CausalLm> copyOf(CausalLm& from, c10::Device device, at::ScalarType dtype) {
  DecoderOptions o;
  o.device = device;
  o.dtype = dtype;
  o.nf4_base = true;
  auto m = std::make_shared<CausalLm>(from.config(), o);
  torch::NoGradGuard no_grad;
  auto dst = m->named_parameters();
  for (const auto& item : from.named_parameters()) {
    if (item.key().find("lora_") != std::string::npos) continue;
    dst[item.key()].copy_(item.value());
  }
  auto a = from.projections(), b = m->projections();
  for (size_t i = 0; i < a.size(); ++i) {
    b[i].second->setNf4(a[i].second->nf4().to(device));
    b[i].second->enableLora(8, 2.0, 0.0, at::kFloat);
    b[i].second->loraA().copy_(a[i].second->loraA());
    b[i].second->loraB().copy_(a[i].second->loraB());
  }
  return m;
}

TEST(Nf4Gpu, QloraStepInBf16MatchesTheCpuStep) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  torch::manual_seed(2);
  DecoderOptions o;
  o.nf4_base = true;
  CausalLm cpu(gpuConfig(), o);
  cpu.initRandom();
  for (auto& [path, proj] : cpu.projections()) {
    proj->enableLora(8, 2.0, 0.0, at::kFloat);
    torch::NoGradGuard no_grad;
    proj->loraB().normal_(0.0, 0.05);
  }
  auto gpu = copyOf(cpu, c10::Device(c10::kCUDA, 0), at::kBFloat16);
  DecoderInput in;
  in.tokens = torch::randint(300, {2, 64});
  in.positions = torch::arange(64).repeat({2, 1});
  in.documents = (in.positions >= 40).to(torch::kLong);  // two documents per row
  const auto mask = torch::ones({2, 64}, torch::kUInt8);
  auto step = [&](CausalLm& m) {
    auto h = m.hidden(in);
    auto l = causalLmLoss(h, m.lmHeadWeight(), in.tokens.to(h.device()), mask.to(h.device()),
                          in.documents.to(h.device()), 32);
    l.sum.backward();
    std::vector<at::Tensor> grads;
    for (auto& [path, proj] : m.projections()) grads.push_back(proj->loraA().grad().cpu());
    return std::make_pair(l.sum.item<double>(), grads);
  };
  const auto [loss_cpu, grads_cpu] = step(cpu);
  const auto [loss_gpu, grads_gpu] = step(*gpu);
  // bf16 keeps 8 significant bits (3.9e-3 relative a value); through 2 layers and a 128-way
  // softmax the loss and the adapter gradients move by ~1e-2 relative: 3e-2 leaves room for
  // that and still fails on a wrong dequantization (a misplaced nibble moves them by > 10%).
  EXPECT_NEAR(loss_gpu, loss_cpu, 3e-2 * std::abs(loss_cpu));
  for (size_t i = 0; i < grads_cpu.size(); ++i) {
    const double rel = (grads_gpu[i] - grads_cpu[i]).norm().item<double>() /
                       (grads_cpu[i].norm().item<double>() + 1e-12);
    EXPECT_LE(rel, 3e-2) << "projection " << i;
  }
}

}  // namespace
}  // namespace loom

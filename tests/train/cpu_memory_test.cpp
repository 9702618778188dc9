// The counting CPU allocator (train/cpu_memory) and, measured with it, the activation and loss
// terms of the memory estimate (model/memory): one forward/backward of a QLoRA and a LoRA model
// on the CPU, with and without gradient checkpointing. The estimate's peak above the resident
// model (activations + the larger of the loss chunk and backward's working set) must be within
// 20% of the measured one: the terms model what autograd keeps, and a forgotten [tokens, I]
// tensor per layer or a wrong loss-buffer count moves them by more than that.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/model/decoder.hpp"
#include "loom/model/fused_ops.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/loss.hpp"
#include "loom/model/memory.hpp"
#include "loom/train/cpu_memory.hpp"
#include "model/model_test_util.hpp"

namespace loom {
namespace {

TEST(CpuMemory, CountsAllocationsAndFrees) {
  trackCpuTensorMemory();
  ASSERT_TRUE(cpuTensorMemoryTracked());
  const int64_t before = cpuTensorBytes();
  resetCpuPeakTensorBytes();
  {
    auto a = at::empty({1000, 1000}, at::kFloat);
    EXPECT_EQ(cpuTensorBytes() - before, 4'000'000);
  }
  EXPECT_EQ(cpuTensorBytes(), before);
  EXPECT_GE(cpuPeakTensorBytes() - before, 4'000'000);
}

TEST(CpuMemory, SwigluKeepsGateAndUpButNotSiluOfGate) {
  // silu(gate) * up as a composition keeps silu(gate) for the product's backward; swiglu keeps
  // only gate and up (held anyway: here the caller's, in a layer the projections' outputs)
  // and recomputes silu(gate). What a forward leaves held differs by exactly that tensor.
  trackCpuTensorMemory();
  const int64_t n = 1024 * 512;
  auto gate = torch::randn({1024, 512}).requires_grad_();
  auto up = torch::randn({1024, 512}).requires_grad_();
  auto held_after = [&](auto&& forward) {
    const int64_t before = cpuTensorBytes();
    auto y = forward();
    return cpuTensorBytes() - before;  // y and what its graph keeps
  };
  const int64_t plain = held_after([&] { return at::silu(gate) * up; });
  const int64_t fused = held_after([&] { return swiglu(gate, up); });
  std::printf("held after forward: composition %lld bytes, swiglu %lld bytes\n",
              static_cast<long long>(plain), static_cast<long long>(fused));
  EXPECT_EQ(fused, n * 4) << "the output only";
  EXPECT_EQ(plain - fused, n * 4) << "silu(gate), fp32";
}

/// The tiny test model scaled up so that activations, not allocator noise, dominate.
HfConfig mediumConfig() {
  HfConfig c = testing::tinyConfig();
  c.vocab_size = 8000;
  c.hidden_size = 512;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  return c;
}

TEST(MemoryEstimate, ActivationAndLossTermsMatchWhatAStepHolds) {
  trackCpuTensorMemory();
  const HfConfig c = mediumConfig();
  for (bool nf4 : {true, false}) {
    for (bool checkpointing : {false, true}) {
      SCOPED_TRACE(std::string(nf4 ? "qlora" : "lora") + (checkpointing ? ", checkpointed" : ""));
      torch::manual_seed(1);
      DecoderOptions o;
      o.nf4_base = nf4;
      o.activation_checkpointing = checkpointing;
      CausalLm model(c, o);
      model.initRandom();
      LoraSpec spec;
      spec.dropout = 0.0;
      applyLora(model, spec);
      model.train();
      MemoryPlan plan;
      plan.dtype = at::kFloat;
      plan.nf4_base = nf4;
      plan.lora = spec;
      plan.micro_batch = 2;
      plan.seq_len = 256;
      plan.gradient_checkpointing = checkpointing;
      plan.loss_chunk_tokens = 256;
      plan.packed = false;
      const MemoryEstimateBytes m = estimateRankMemory(c, plan);

      DecoderInput in;
      in.tokens = torch::randint(c.vocab_size, {2, 256});
      const auto mask = torch::ones({2, 256}, torch::kUInt8);
      const int64_t resident = cpuTensorBytes();
      resetCpuPeakTensorBytes();
      {
        auto h = model.hidden(in);
        auto loss = causalLmLoss(h, model.lmHeadWeight(), in.tokens, mask, {}, 256);
        loss.sum.backward();
      }
      const double measured = static_cast<double>(cpuPeakTensorBytes() - resident);
      // The LoRA gradients are allocated here; in training they live in the buckets (trainable).
      double lora_grads = 0;
      for (auto& [path, proj] : model.projections()) {
        if (proj->hasLora()) lora_grads += 4.0 * (proj->loraA().numel() + proj->loraB().numel());
      }
      const double estimated =
          static_cast<double>(m.activations + std::max(m.loss, m.backward + m.transient)) +
          lora_grads;
      std::printf(
          "memory %s%s: peak above the model %.1f MiB measured, %.1f MiB estimated (%.2fx)\n",
          nf4 ? "qlora" : "lora", checkpointing ? " checkpointed" : "", measured / 1048576,
          estimated / 1048576, estimated / measured);
      EXPECT_NEAR(estimated / measured, 1.0, 0.2);
    }
  }
}

}  // namespace
}  // namespace loom

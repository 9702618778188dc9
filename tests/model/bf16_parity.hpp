#pragma once
// Loom's bf16 logits against transformers' bf16 logits computed on the same device, for the
// tiny models of model_reference.py (make --bf16 DEVICE): the CPU reference test and the
// CUDA gpu test share it.
//
// The bound comes from the effect: two bf16 computations of one function each differ from
// it by their rounding, so they differ from each other by about the sum. transformers' own
// bf16 error is measured against its fp32 logits (e_hf); Loom's bf16 logits must be within
// 3 e_hf of transformers' bf16 ones and of its fp32 ones (Loom rounds in other places: on
// CUDA one rounding in the fused norm where transformers has two, flash attention's
// accumulation order). A wrong operation (a norm weight left out, a rotary half swapped, a
// document boundary crossed) moves logits by their own size, far above that.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "loom/model/attention.hpp"
#include "loom/model/hf_io.hpp"
#include "model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom::testing {

/// `device`: where both sides run (the CPU, or CUDA with `cuda_major` its compute capability).
/// `identical`: Loom's logits must equal transformers' bf16 logits bit for bit (the CPU, where
/// Loom mirrors transformers op for op; measured 0 on every variant).
inline void expectBf16LogitsLikeTransformers(const c10::Device& device, int cuda_major,
                                             bool identical) {
  TempDir dir("loom-bf16-parity");
  const std::vector<std::string> variants{"qwen3", "qwen3_tied",  "qwen2",
                                          "llama", "llama_rope3", "llama_hd"};
  std::vector<std::string> args{"make", dir.path().string()};
  args.insert(args.end(), variants.begin(), variants.end());
  args.insert(args.end(), {"--bf16", device.is_cuda() ? "cuda" : "cpu"});
  auto py = runPythonScript("model_reference.py", args);
  ASSERT_EQ(py.exit_code, 0) << py.output;
  for (const auto& v : variants) {
    SCOPED_TRACE(v);
    const auto model_dir = dir.path() / v;
    DecoderOptions o;
    o.dtype = at::kBFloat16;
    o.device = device;
    auto model = loadModel(model_dir, o);
    // The kernel the trainer would choose for packed rows (the pad is a document of its own).
    const auto backend =
        packedAttentionFor(device.is_cuda(), cuda_major, o.dtype, model->config().head_dim);
    model->setAttention(backend);
    model->eval();
    SafetensorsFile ref(model_dir / "ref.safetensors");
    const auto tokens = ref.tensor("tokens"), attention = ref.tensor("attention_mask");
    torch::NoGradGuard no_grad;
    const auto in = paddedInput(tokens.to(device), attention.to(device));
    const auto logits = model->logits(model->hidden(in)).to(at::kFloat).cpu();
    const auto mine = validRows(logits, attention);
    const auto hf16 = validRows(ref.tensor("logits_bf16"), attention);
    const auto hf32 = validRows(ref.tensor("logits"), attention);
    const double e_hf = maxAbsDiff(hf16, hf32);
    const double to_hf16 = maxAbsDiff(mine, hf16), to_hf32 = maxAbsDiff(mine, hf32);
    std::printf(
        "bf16 parity %s on %s (%s): |loom - hf bf16| %.3g, |loom - hf fp32| %.3g, "
        "|hf bf16 - hf fp32| %.3g, max |logit| %.3g\n",
        v.c_str(), device.str().c_str(), toString(backend).c_str(), to_hf16, to_hf32, e_hf,
        hf32.abs().max().item<double>());
    EXPECT_GT(e_hf, 0.0) << "transformers really ran in bf16";
    EXPECT_LE(to_hf16, 3 * e_hf);
    if (identical) EXPECT_EQ(to_hf16, 0.0);
    EXPECT_LE(to_hf32, 3 * e_hf);
  }
}

}  // namespace loom::testing

// Label gpu: Loom's bf16 logits on a CUDA device against transformers' bf16 logits on the
// same device and the same padded batch (tiny models made at test time, model_reference.py).
// Loom runs its GPU path: the packed-row kernel the trainer would choose (flash varlen on
// sm_80+), torch's fused RMSNorm, swiglu, addmm'd LoRA-free projections. Skips without a
// CUDA device.
//
// The bound comes from the effect: two bf16 computations of one function each differ from
// it by their rounding, so they differ from each other by about the sum. transformers' own
// bf16 error is measured here against its fp32 logits (e_hf); Loom's bf16 logits must be
// within 3 e_hf of transformers' bf16 ones and of its fp32 ones (Loom rounds in other places:
// one rounding in the fused norm where transformers has two, flash attention's accumulation
// order). A wrong operation (a norm weight left out, a rotary half swapped, a document
// boundary crossed) moves logits by their own size, far above that.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/model/attention.hpp"
#include "loom/model/hf_io.hpp"
#include "model_test_util.hpp"
#include "support/gpu_test_support.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::maxAbsDiff;
using testing::validRows;

TEST(HfParityGpu, Bf16LogitsMatchTransformersBf16) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const auto gpus = listCudaDevices();
  if (!gpus.front().hasBf16())
    GTEST_SKIP() << "the GPU has no bf16 (" << gpus.front().capability() << ")";
  testing::TempDir dir("loom-hf-parity-gpu");
  const std::vector<std::string> variants{"qwen3", "qwen3_tied",  "qwen2",
                                          "llama", "llama_rope3", "llama_hd"};
  std::vector<std::string> args{"make", dir.path().string()};
  args.insert(args.end(), variants.begin(), variants.end());
  args.push_back("--bf16-cuda");
  auto py = testing::runPythonScript("model_reference.py", args);
  ASSERT_EQ(py.exit_code, 0) << py.output;

  const c10::Device cuda(c10::kCUDA, gpus.front().index);
  for (const auto& v : variants) {
    SCOPED_TRACE(v);
    const auto model_dir = dir.path() / v;
    DecoderOptions o;
    o.dtype = at::kBFloat16;
    o.device = cuda;
    auto model = loadModel(model_dir, o);
    const auto backend =
        packedAttentionFor(true, gpus.front().major, o.dtype, model->config().head_dim);
    model->setAttention(backend);
    model->eval();
    SafetensorsFile ref(model_dir / "ref.safetensors");
    const auto tokens = ref.tensor("tokens"), attention = ref.tensor("attention_mask");
    torch::NoGradGuard no_grad;
    auto in = testing::paddedInput(tokens.to(cuda), attention.to(cuda));
    const auto loom = model->logits(model->hidden(in)).to(at::kFloat).cpu();
    const auto hf16 = validRows(ref.tensor("logits_bf16_cuda"), attention);
    const auto hf32 = validRows(ref.tensor("logits"), attention);
    const auto mine = validRows(loom, attention);
    const double e_hf = maxAbsDiff(hf16, hf32);
    const double to_hf16 = maxAbsDiff(mine, hf16), to_hf32 = maxAbsDiff(mine, hf32);
    std::printf(
        "gpu parity %s (%s): |loom bf16 - hf bf16| %.3g, |loom bf16 - hf fp32| %.3g, "
        "|hf bf16 - hf fp32| %.3g, max |logit| %.3g\n",
        v.c_str(), toString(backend).c_str(), to_hf16, to_hf32, e_hf,
        hf32.abs().max().item<double>());
    EXPECT_GT(e_hf, 0.0) << "transformers really ran in bf16";
    EXPECT_LE(to_hf16, 3 * e_hf);
    EXPECT_LE(to_hf32, 3 * e_hf);
  }
}

}  // namespace
}  // namespace loom

// Reference parity: Loom's fp32 CPU logits and loss against transformers, for every
// supported architecture variant (models made at test time by make_tiny_model.py); and
// Loom's bf16 CPU logits against transformers' bf16 CPU logits (bf16_parity.hpp; the CUDA
// counterpart is hf_parity_gpu_test).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "bf16_parity.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/loss.hpp"
#include "model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::maxAbsDiff;
using testing::TempDir;

TEST(HfParity, LogitsAndLossMatchTransformers) {
  TempDir dir("loom-hf-parity");
  const std::vector<std::string> variants{"qwen3", "qwen3_tied",  "qwen2",
                                          "llama", "llama_rope3", "llama_hd"};
  std::vector<std::string> args{"make", dir.path().string()};
  args.insert(args.end(), variants.begin(), variants.end());
  auto py = testing::runPythonScript("model_reference.py", args);
  ASSERT_EQ(py.exit_code, 0) << py.output;

  for (const auto& v : variants) {
    SCOPED_TRACE(v);
    const auto model_dir = dir.path() / v;
    auto model = loadModel(model_dir, DecoderOptions{});
    model->eval();
    SafetensorsFile ref(model_dir / "ref.safetensors");
    const auto tokens = ref.tensor("tokens"), attention = ref.tensor("attention_mask");
    const auto loss_mask = ref.tensor("loss_mask");
    torch::NoGradGuard no_grad;
    const auto in = testing::paddedInput(tokens, attention);
    auto hidden = model->hidden(in);      // [B, T, H]
    auto logits = model->logits(hidden);  // [B, T, V]
    const double logit_diff = maxAbsDiff(testing::validRows(logits, attention),
                                         testing::validRows(ref.tensor("logits"), attention));
    // A tiny chunk exercises the chunk loop; targets never cross into the pad "document".
    auto loss =
        causalLmLoss(hidden, model->lmHeadWeight(), tokens, loss_mask * attention, in.documents, 5);
    const double ref_loss = ref.tensor("loss_sum").item<double>();
    const double loss_rel = std::abs(loss.sum.item<double>() - ref_loss) / std::abs(ref_loss);
    std::cout << "parity " << v << ": logits max_abs_diff=" << logit_diff
              << " loss rel_diff=" << loss_rel << " (loss " << loss.sum.item<double>() << " over "
              << loss.count << " tokens)\n";
    EXPECT_LE(logit_diff, 1e-4);
    EXPECT_LE(loss_rel, 1e-5);
    EXPECT_EQ(loss.count, ref.tensor("loss_count").item<int64_t>());
  }
}

TEST(HfParity, Bf16LogitsMatchTransformersBf16) {
  testing::expectBf16LogitsLikeTransformers(c10::Device(c10::kCPU), 0, /*identical=*/true);
}

}  // namespace
}  // namespace loom

// Reference parity of LoRA: gradients and logits against PEFT, PEFT adapters loading in
// Loom, and adapters / full / merged models written by Loom loading in PEFT / transformers.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/model/hf_io.hpp"
#include "loom/model/loss.hpp"
#include "model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::maxAbsDiff;
using testing::maxRelDiff;
using testing::TempDir;

TEST(LoraParity, PeftAdapterLoadsWithSameLogitsAndGradients) {
  TempDir dir("loom-lora-parity");
  const std::vector<std::string> variants{"qwen3", "qwen2"};
  std::vector<std::string> args{"make", dir.path().string()};
  args.insert(args.end(), variants.begin(), variants.end());
  args.push_back("--peft");
  args.insert(args.end(), variants.begin(), variants.end());
  auto py = testing::runPythonScript("model_reference.py", args);
  ASSERT_EQ(py.exit_code, 0) << py.output;

  for (const auto& v : variants) {
    for (int rs : {0, 1}) {
      SCOPED_TRACE(v + " rslora=" + std::to_string(rs));
      const auto model_dir = dir.path() / v;
      const auto adapter_dir = model_dir / ("adapter_rs" + std::to_string(rs));
      auto model = loadModel(model_dir, DecoderOptions{});
      auto spec = loadAdapter(*model, adapter_dir);
      EXPECT_EQ(spec.use_rslora, rs == 1);
      model->train();  // dropout is 0: train mode must not change anything

      SafetensorsFile base_ref(model_dir / "ref.safetensors");
      SafetensorsFile ref(adapter_dir / "peft_ref.safetensors");
      const auto tokens = base_ref.tensor("tokens"), attention = base_ref.tensor("attention_mask");
      const auto in = testing::paddedInput(tokens, attention);
      auto hidden = model->hidden(in);
      auto loss = causalLmLoss(hidden, model->lmHeadWeight(), tokens,
                               base_ref.tensor("loss_mask") * attention, in.documents);
      loss.sum.backward();

      const double logit_diff =
          maxAbsDiff(testing::validRows(model->logits(hidden).detach(), attention),
                     testing::validRows(ref.tensor("logits"), attention));
      const double ref_loss = ref.tensor("loss_sum").item<double>();
      const double loss_rel = std::abs(loss.sum.item<double>() - ref_loss) / std::abs(ref_loss);
      double grad_rel = 0;
      int n = 0;
      for (auto& [name, param] : loraState(*model)) {
        ASSERT_TRUE(param.grad().defined()) << name;
        grad_rel = std::max(grad_rel, maxRelDiff(param.grad(), ref.tensor("grad." + name)));
        ++n;
      }
      EXPECT_EQ(n, 2 * 7 * 2);
      std::cout << "peft " << v << " rslora=" << rs << ": logits max_abs_diff=" << logit_diff
                << " loss rel_diff=" << loss_rel << " lora grads max rel_diff=" << grad_rel << " ("
                << n << " tensors)\n";
      EXPECT_LE(logit_diff, 1e-4);
      EXPECT_LE(loss_rel, 1e-5);
      EXPECT_LE(grad_rel, 1e-5);
    }
  }
}

/// Loom's logits for the reference batch, in the file model_reference.py verify reads.
void dumpLogits(CausalLm& model, const at::Tensor& tokens, const at::Tensor& attention,
                const std::filesystem::path& file) {
  torch::NoGradGuard no_grad;
  model.eval();
  auto logits = model.logits(model.hidden(testing::paddedInput(tokens, attention)));
  saveSafetensors(file, {{"tokens", tokens}, {"attention_mask", attention}, {"logits", logits}});
}

/// A few optimizer steps on the reference batch, so saved weights differ from their init.
void train(CausalLm& model, const at::Tensor& tokens, const at::Tensor& attention,
           const at::Tensor& loss_mask, int steps) {
  std::vector<at::Tensor> params;
  for (auto& p : model.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  torch::optim::Adam opt(params, torch::optim::AdamOptions(1e-2));
  const auto in = testing::paddedInput(tokens, attention);
  model.train();
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    auto loss = causalLmLoss(model.hidden(in), model.lmHeadWeight(), tokens, loss_mask * attention,
                             in.documents);
    (loss.sum / loss.count).backward();
    opt.step();
    std::cout << "  step " << i << " loss/token " << (loss.sum / loss.count).item<double>() << "\n";
  }
}

TEST(LoraParity, LoomSavedAdapterFullAndMergedModelsLoadInHuggingFace) {
  TempDir dir("loom-save-parity");
  const std::vector<std::string> variants{"qwen3", "llama_hd"};  // untied and tied
  std::vector<std::string> args{"make", dir.path().string()};
  args.insert(args.end(), variants.begin(), variants.end());
  auto py = testing::runPythonScript("model_reference.py", args);
  ASSERT_EQ(py.exit_code, 0) << py.output;

  std::vector<std::string> jobs{"verify"};
  for (const auto& v : variants) {
    const auto model_dir = dir.path() / v;
    SafetensorsFile ref(model_dir / "ref.safetensors");
    const auto tokens = ref.tensor("tokens").clone(),
               attention = ref.tensor("attention_mask").clone();
    const auto loss_mask = ref.tensor("loss_mask").clone();

    // LoRA: train, save the adapter, then merge and save the full model.
    auto model = loadModel(model_dir, DecoderOptions{});
    LoraSpec spec;
    spec.rank = 4;
    spec.alpha = 16;
    spec.use_rslora = v == "llama_hd";
    applyLora(*model, spec);
    train(*model, tokens, attention, loss_mask, 3);
    const auto adapter_dir = dir.path() / (v + "_loom_adapter");
    saveAdapter(*model, spec, adapter_dir, model_dir.string());
    dumpLogits(*model, tokens, attention, adapter_dir / "loom_logits.safetensors");
    jobs.push_back("adapter:" + model_dir.string() + ":" + adapter_dir.string() + ":" +
                   (adapter_dir / "loom_logits.safetensors").string());

    const auto merged_dir = dir.path() / (v + "_loom_merged");
    saveMergedModel(*model, merged_dir, model_dir, at::kFloat);
    dumpLogits(*model, tokens, attention, merged_dir / "loom_logits.safetensors");
    jobs.push_back("full:" + merged_dir.string() + ":" +
                   (merged_dir / "loom_logits.safetensors").string());

    // Full fine-tuning, saved in shards.
    auto full = loadModel(model_dir, DecoderOptions{});
    enableFullFinetune(*full);
    train(*full, tokens, attention, loss_mask, 2);
    const auto full_dir = dir.path() / (v + "_loom_full");
    saveFullModel(*full, full_dir, model_dir, at::kFloat, /*max_shard_bytes=*/60000);
    EXPECT_TRUE(std::filesystem::exists(full_dir / "model.safetensors.index.json"));
    dumpLogits(*full, tokens, attention, full_dir / "loom_logits.safetensors");
    jobs.push_back("full:" + full_dir.string() + ":" +
                   (full_dir / "loom_logits.safetensors").string());
  }
  auto verify = testing::runPythonScript("model_reference.py", jobs);
  std::istringstream lines(verify.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("verify", 0) == 0 || line.rfind("FAILED", 0) == 0) std::cout << line << "\n";
  }
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
}

}  // namespace
}  // namespace loom

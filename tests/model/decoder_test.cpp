// Decoder behaviour that needs no reference implementation: packed rows and activation
// checkpointing.

#include "loom/model/decoder.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/model/lora.hpp"
#include "loom/model/loss.hpp"
#include "model_test_util.hpp"

namespace loom {
namespace {

using testing::maxAbsDiff;
using testing::tinyConfig;

std::shared_ptr<CausalLm> randomModel(const HfConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  auto m = std::make_shared<CausalLm>(c, DecoderOptions{});
  m->initRandom(0.1);
  return m;
}

TEST(Decoder, PackedRowEqualsEachDocumentAlone) {
  for (const char* type : {"qwen3", "llama"}) {
    auto model = randomModel(tinyConfig(type), 1);
    model->eval();
    torch::NoGradGuard no_grad;
    auto doc_a = torch::randint(0, 300, {1, 6}, torch::kLong);
    auto doc_b = torch::randint(0, 300, {1, 9}, torch::kLong);
    auto alone_a = model->logits(model->hidden({doc_a, {}, {}}));  // [1, 6, V]
    auto alone_b = model->logits(model->hidden({doc_b, {}, {}}));  // [1, 9, V]

    DecoderInput packed;
    packed.tokens = torch::cat({doc_a, doc_b}, 1);  // [1, 15]
    packed.positions = torch::cat({torch::arange(6), torch::arange(9)}).unsqueeze(0);
    packed.documents =
        torch::cat({torch::zeros({6}), torch::ones({9})}).to(torch::kLong).unsqueeze(0);
    auto together = model->logits(model->hidden(packed));  // [1, 15, V]
    const double diff = std::max(maxAbsDiff(together.slice(1, 0, 6), alone_a),
                                 maxAbsDiff(together.slice(1, 6), alone_b));
    std::cout << type << " packed vs alone: max_abs_diff=" << diff << "\n";
    EXPECT_LE(diff, 1e-5);
  }
}

/// Gradients of every trainable parameter after one forward/backward.
std::vector<at::Tensor> grads(CausalLm& model, const at::Tensor& tokens, const at::Tensor& mask,
                              bool checkpoint) {
  model.zero_grad();
  model.setActivationCheckpointing(checkpoint);
  torch::manual_seed(42);  // LoRA dropout draws the same masks in both runs
  auto h = model.hidden({tokens, {}, {}});
  auto loss = causalLmLoss(h, model.lmHeadWeight(), tokens, mask, {}, 7);
  loss.sum.backward();
  std::vector<at::Tensor> out;
  for (auto& p : model.parameters()) {
    if (p.requires_grad()) out.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  }
  return out;
}

TEST(Decoder, ActivationCheckpointingGivesTheSameGradients) {
  auto tokens = torch::randint(0, 300, {2, 12}, torch::kLong);
  auto mask = torch::ones({2, 12}, torch::kLong);
  for (bool lora : {false, true}) {
    auto model = randomModel(tinyConfig("qwen3"), 3);
    if (lora) {
      LoraSpec spec;
      spec.rank = 4;
      spec.alpha = 8;
      spec.dropout = 0.2;
      applyLora(*model, spec);
      torch::NoGradGuard no_grad;
      for (auto& [path, proj] : model->projections()) proj->loraB().normal_(0, 0.1);
    } else {
      enableFullFinetune(*model);
    }
    model->train();
    auto plain = grads(*model, tokens, mask, false);
    auto recomputed = grads(*model, tokens, mask, true);
    ASSERT_EQ(plain.size(), recomputed.size());
    double worst = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
      ASSERT_TRUE(plain[i].defined() && recomputed[i].defined()) << "parameter " << i;
      worst = std::max(worst, maxAbsDiff(plain[i], recomputed[i]));
    }
    std::cout << (lora ? "lora" : "full") << " checkpointed vs plain grads: max_abs_diff=" << worst
              << "\n";
    EXPECT_LE(worst, 1e-6);
  }
}

TEST(Decoder, ParameterNamesMirrorHuggingFace) {
  CausalLm model(tinyConfig("qwen2", /*tied=*/true), DecoderOptions{});
  std::set<std::string> names;
  for (auto& item : model.named_parameters()) names.insert(item.key());
  for (const char* n : {"model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.bias",
                        "model.layers.0.mlp.down_proj.weight", "model.norm.weight",
                        "model.layers.0.post_attention_layernorm.weight"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  EXPECT_FALSE(names.count("lm_head.weight")) << "tied: no separate lm_head";
  EXPECT_FALSE(names.count("model.layers.0.self_attn.o_proj.bias"));
}

}  // namespace
}  // namespace loom

// Decoder behaviour that needs no reference implementation: packed rows and activation
// checkpointing.

#include "loom/model/decoder.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <map>

#include "loom/model/lora.hpp"
#include "loom/model/loss.hpp"
#include "lora_test_models.hpp"
#include "model_test_util.hpp"

namespace loom {
namespace {

using testing::loraModelLike;
using testing::loraProjections;
using testing::maxAbsDiff;
using testing::randomModel;
using testing::tinyConfig;

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

TEST(Decoder, SharedInputLoraEqualsEachBranchAlone) {
  // q/k/v (and gate/up) read x once through their concatenated A factors and add B's product
  // with addmm; in fp32 that is PEFT's y + s * B(A x) up to summation order in the GEMMs
  // (~1e-7 relative of y); a branch left out or scaled wrongly moves y by ~1e-1 here.
  auto model = randomModel(tinyConfig("qwen3"), 3);
  auto projs = loraProjections(*model, 4);
  auto x = torch::randn({2, 5, 64});
  Projection* q = projs[0];
  Projection* k = projs[1];
  Projection* v = projs[2];
  const auto shared = projectShared(x, {q, k, v});
  for (size_t i = 0; i < 3; ++i) {
    Projection& p = *projs[i];
    const auto alone =
        p.baseForward(x) + at::linear(at::linear(x, p.loraA()), p.loraB()) * p.loraScaling();
    EXPECT_LE(testing::maxRelDiff(shared[i], alone), 1e-6) << "projection " << i;
    EXPECT_GT(testing::maxRelDiff(p.baseForward(x), alone), 1e-3) << "the branch must matter";
  }
}

TEST(Decoder, LoraInASixteenBitModelRunsInItsDtypeAndTrainsTheFp32Adapter) {
  // A bf16 model with fp32 adapter weights: hidden states within bf16 rounding of the fp32
  // model's (bf16 keeps 8 bits: ~4e-3 relative per op, a few ops deep), and the fp32 adapter
  // weights receive fp32 gradients through the in-graph cast.
  auto fp32 = randomModel(tinyConfig("qwen3"), 5);
  loraProjections(*fp32, 6);
  auto bf16 = loraModelLike(*fp32, at::kBFloat16);
  for (auto& [path, p] : bf16->projections()) EXPECT_EQ(p->loraA().scalar_type(), at::kFloat);
  auto tokens = torch::randint(0, 300, {2, 12}, torch::kLong);
  const auto a = fp32->hidden({tokens, {}, {}});
  const auto b = bf16->hidden({tokens, {}, {}});
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  const double d = testing::maxRelDiff(b.to(at::kFloat), a);
  std::cout << "bf16 vs fp32 hidden with LoRA: max_rel_diff=" << d << "\n";
  EXPECT_LE(d, 5e-2);
  b.to(at::kFloat).sum().backward();
  for (auto& [path, p] : bf16->projections()) {
    ASSERT_TRUE(p->loraA().grad().defined()) << path;
    EXPECT_EQ(p->loraA().grad().scalar_type(), at::kFloat);
    EXPECT_GT(p->loraA().grad().abs().sum().item<double>(), 0.0) << path;
  }
}

TEST(Decoder, LoraComputeCopiesGiveTheInGraphCastsValuesAndGradients) {
  // Training in a 16-bit dtype, the forward reads 16-bit copies of the fp32 adapter factors
  // (refreshed by the optimizer after each step) in place of casting the factors in the graph
  // every micro-batch. A copy holds exactly the cast's value, and the gradient it receives is
  // the one the cast passed back before (the cast's backward only widens it to fp32): so the
  // hidden states and the gradients must be bit-identical, not merely close.
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    auto source = randomModel(tinyConfig("qwen3"), 7);
    loraProjections(*source, 8);
    std::shared_ptr<CausalLm> models[2] = {loraModelLike(*source, dtype),
                                           loraModelLike(*source, dtype)};
    const auto copies = makeLoraComputeCopies(*models[1], dtype);
    ASSERT_EQ(copies.size(), 2 * models[1]->projections().size());
    for (auto& [path, p] : models[1]->projections()) {
      ASSERT_TRUE(p->loraComputeA().defined()) << path;
      EXPECT_EQ(p->loraComputeA().scalar_type(), dtype);
      EXPECT_TRUE(p->loraComputeA().is_leaf() && p->loraComputeA().requires_grad());
      EXPECT_TRUE(copies.at(path + ".lora_B.weight").is_same(p->loraComputeB())) << path;
      EXPECT_EQ(p->loraA().scalar_type(), at::kFloat) << "the factors stay fp32";
    }
    auto tokens = torch::randint(0, 300, {2, 12}, torch::kLong);
    const auto cast = models[0]->hidden({tokens, {}, {}});
    const auto copied = models[1]->hidden({tokens, {}, {}});
    EXPECT_TRUE(torch::equal(cast, copied)) << dtype;
    cast.to(at::kFloat).sum().backward();
    copied.to(at::kFloat).sum().backward();
    std::map<std::string, Projection*> other;
    for (auto& [path, q] : models[1]->projections()) other[path] = q;
    for (auto& [path, p] : models[0]->projections()) {
      Projection& q = *other.at(path);
      ASSERT_TRUE(q.loraComputeA().grad().defined()) << path;
      EXPECT_EQ(q.loraComputeA().grad().scalar_type(), dtype);
      EXPECT_TRUE(torch::equal(p->loraA().grad(), q.loraComputeA().grad().to(at::kFloat)))
          << dtype << " " << path;
      EXPECT_TRUE(torch::equal(p->loraB().grad(), q.loraComputeB().grad().to(at::kFloat)))
          << dtype << " " << path;
      EXPECT_FALSE(q.loraA().grad().defined()) << "the fp32 factor is not in the graph";
      EXPECT_GT(p->loraA().grad().abs().sum().item<double>(), 0.0) << path;
    }
  }
}

TEST(Decoder, LoraComputeCopiesOnlyWhereTheyApply) {
  // fp32 compute needs none; a branch with dropout keeps PEFT's fp32 path (no copy).
  auto model = randomModel(tinyConfig("qwen3"), 9);
  LoraSpec spec;
  spec.rank = 4;
  spec.alpha = 8;
  spec.dropout = 0.1;
  spec.target_modules = {"q_proj"};
  applyLora(*model, spec);
  EXPECT_TRUE(makeLoraComputeCopies(*model, at::kFloat).empty());
  EXPECT_TRUE(makeLoraComputeCopies(*model, at::kBFloat16).empty());
  for (auto& [path, p] : model->projections()) EXPECT_FALSE(p->loraComputeA().defined()) << path;
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

// Model folders and adapters written by Loom itself: round trips, and every loading error
// (missing, extra, misshapen, non-floating tensors; corrupt files). Also the inspect numbers.

#include "loom/model/hf_io.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/core/file_util.hpp"
#include "model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::expectInputError;
using testing::maxAbsDiff;
using testing::TempDir;
using testing::tinyConfig;

/// A random tiny model saved by Loom into `dir` (config.json + model.safetensors).
std::shared_ptr<CausalLm> savedModel(const std::filesystem::path& dir, bool tied = false,
                                     uint64_t max_shard_bytes = kDefaultMaxShardBytes) {
  torch::manual_seed(5);
  auto m = std::make_shared<CausalLm>(tinyConfig("qwen3", tied), DecoderOptions{});
  m->initRandom(0.1);
  saveFullModel(*m, dir, {}, at::kFloat, max_shard_bytes);
  return m;
}

/// Rewrites dir/model.safetensors with `edit` applied to its tensors.
void editCheckpoint(const std::filesystem::path& dir,
                    const std::function<void(NamedTensors&)>& edit) {
  NamedTensors tensors;
  {
    SafetensorsFile f(dir / "model.safetensors");
    for (const auto& n : f.names()) tensors.emplace_back(n, f.tensor(n).clone());
  }
  edit(tensors);
  saveSafetensors(dir / "model.safetensors", tensors);
}

TEST(HfIo, SavedModelLoadsBackIdentically) {
  TempDir dir;
  for (uint64_t shard : {kDefaultMaxShardBytes, uint64_t{40000}}) {
    auto original = savedModel(dir.path(), false, shard);
    EXPECT_EQ(std::filesystem::exists(dir.path() / "model.safetensors.index.json"), shard < 1e6);
    auto loaded = loadModel(dir.path(), DecoderOptions{});
    auto a = original->named_parameters(), b = loaded->named_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  }
}

TEST(HfIo, MissingTensorIsAnInputError) {
  TempDir dir;
  savedModel(dir.path());
  editCheckpoint(dir.path(), [](NamedTensors& t) {
    t.erase(
        std::remove_if(t.begin(), t.end(),
                       [](auto& nt) { return nt.first == "model.layers.1.mlp.up_proj.weight"; }),
        t.end());
  });
  expectInputError([&] { loadModel(dir.path(), {}); },
                   {dir.path().string(), "missing tensor 'model.layers.1.mlp.up_proj.weight'"});
}

TEST(HfIo, ExtraTensorIsAnInputError) {
  TempDir dir;
  savedModel(dir.path());
  editCheckpoint(dir.path(),
                 [](NamedTensors& t) { t.emplace_back("model.extra.weight", torch::ones({2})); });
  expectInputError([&] { loadModel(dir.path(), {}); },
                   {"model.safetensors", "unexpected tensor 'model.extra.weight'"});
}

TEST(HfIo, ShapeMismatchIsAnInputError) {
  TempDir dir;
  savedModel(dir.path());
  editCheckpoint(dir.path(), [](NamedTensors& t) {
    for (auto& nt : t) {
      if (nt.first == "model.norm.weight") nt.second = torch::ones({65});
    }
  });
  expectInputError([&] { loadModel(dir.path(), {}); },
                   {"model.safetensors", "'model.norm.weight'", "[65]", "[64]"});
}

TEST(HfIo, NonFloatingDtypeIsAnInputError) {
  TempDir dir;
  savedModel(dir.path());
  editCheckpoint(dir.path(), [](NamedTensors& t) {
    for (auto& nt : t) {
      if (nt.first == "model.norm.weight") nt.second = torch::ones({64}, torch::kInt);
    }
  });
  expectInputError([&] { loadModel(dir.path(), {}); },
                   {"model.safetensors", "'model.norm.weight'", "I32", "floating"});
}

TEST(HfIo, TruncatedCheckpointIsAnInputError) {
  TempDir dir;
  savedModel(dir.path());
  const auto file = dir.path() / "model.safetensors";
  const std::string raw = testing::readFile(file);
  writeFileAtomic(file, raw.substr(0, raw.size() / 2));
  expectInputError([&] { loadModel(dir.path(), {}); }, {file.string(), "past the end"});
}

TEST(HfIo, UnsupportedModelTypeIsAnInputError) {
  TempDir dir;
  savedModel(dir.path());
  auto text = testing::readFile(dir.path() / "config.json");
  text.replace(text.find("\"qwen3\""), 7, "\"gpt2\"");
  writeFileAtomic(dir.path() / "config.json", text);
  expectInputError([&] { loadModel(dir.path(), {}); },
                   {(dir.path() / "config.json").string(), "unsupported model_type 'gpt2'"});
}

TEST(HfIo, TiedModelIgnoresAStoredLmHead) {
  TempDir dir;
  savedModel(dir.path(), /*tied=*/true);
  editCheckpoint(dir.path(), [](NamedTensors& t) {
    t.emplace_back("lm_head.weight", torch::zeros({300, 64}));
  });
  EXPECT_NO_THROW(loadModel(dir.path(), {}));
}

TEST(HfIo, AdapterRoundTripAndErrors) {
  TempDir dir;
  const auto base = dir.path() / "base";
  auto model = savedModel(base);
  LoraSpec spec;
  spec.rank = 4;
  spec.alpha = 8;
  spec.target_modules = {"q_proj", "v_proj", "down_proj"};
  applyLora(*model, spec);
  {
    torch::NoGradGuard no_grad;
    for (auto& [path, proj] : model->projections()) {
      if (proj->hasLora()) proj->loraB().normal_();
    }
  }
  const auto adapter = dir.path() / "adapter";
  saveAdapter(*model, spec, adapter, "base");
  auto loaded = loadModel(base, {});
  auto spec2 = loadAdapter(*loaded, adapter);
  EXPECT_EQ(spec2.rank, 4);
  EXPECT_EQ(loraState(*loaded).size(), 2u * 3 * 2);
  for (auto& [name, t] : loraState(*model)) {
    bool found = false;
    for (auto& [name2, t2] : loraState(*loaded)) {
      if (name2 == name) {
        found = true;
        EXPECT_TRUE(torch::equal(t, t2)) << name;
      }
    }
    EXPECT_TRUE(found) << name;
  }

  const auto file = adapter / "adapter_model.safetensors";
  auto rewrite = [&](const std::function<void(NamedTensors&)>& edit) {
    NamedTensors t = loraState(*model);
    edit(t);
    saveSafetensors(file, t);
  };
  rewrite([](NamedTensors& t) { t.pop_back(); });
  expectInputError(
      [&] { loadAdapter(*loadModel(base, {}), adapter); },
      {file.string(),
       "missing tensor 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight'"});
  rewrite([](NamedTensors& t) {
    t.emplace_back("base_model.model.lm_head.lora_A.weight", torch::ones({4, 64}));
  });
  expectInputError([&] { loadAdapter(*loadModel(base, {}), adapter); },
                   {file.string(), "unexpected tensor 'base_model.model.lm_head.lora_A.weight'"});
  rewrite([](NamedTensors& t) { t[0].second = torch::ones({5, 64}); });
  expectInputError([&] { loadAdapter(*loadModel(base, {}), adapter); },
                   {file.string(),
                    "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'", "[5, 64]"});

  auto cfg = testing::readFile(adapter / "adapter_config.json");
  cfg.replace(cfg.find("\"use_dora\": false"), 17, "\"use_dora\": true");
  writeFileAtomic(adapter / "adapter_config.json", cfg);
  expectInputError([&] { loadAdapter(*loadModel(base, {}), adapter); },
                   {"adapter_config.json", "use_dora"});
}

TEST(HfIo, MergedModelEqualsModelWithAdapter) {
  TempDir dir;
  auto model = savedModel(dir.path() / "base");
  LoraSpec spec;
  spec.rank = 4;
  spec.use_rslora = true;
  applyLora(*model, spec);
  {
    torch::NoGradGuard no_grad;
    for (auto& [path, proj] : model->projections()) proj->loraB().normal_(0, 0.1);
  }
  model->eval();
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(0, 300, {2, 9}, torch::kLong);
  auto before = model->logits(model->hidden({tokens, {}, {}}));
  saveMergedModel(*model, dir.path() / "merged", dir.path() / "base", at::kFloat);
  auto merged = loadModel(dir.path() / "merged", {});
  auto after = merged->logits(merged->hidden({tokens, {}, {}}));
  const double diff = maxAbsDiff(before, after);
  std::cout << "merged vs adapter (Loom): max_abs_diff=" << diff << "\n";
  EXPECT_LE(diff, 1e-4);
}

TEST(HfIo, InspectNumbersForQwen3_1_7B) {
  HfConfig c;
  c.model_type = "qwen3";
  c.vocab_size = 151936;
  c.hidden_size = 2048;
  c.intermediate_size = 6144;
  c.num_hidden_layers = 28;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.qk_norm = true;
  c.tie_word_embeddings = true;
  c.rope_theta = 1000000;
  c.torch_dtype = "bfloat16";
  LoraSpec lora;
  lora.rank = 16;
  lora.alpha = 32;
  const auto p = countParameters(c, &lora);
  EXPECT_EQ(p.total, 1720574976);
  EXPECT_EQ(p.lora, 17432576);
  EXPECT_EQ(countParameters(c, nullptr).trainable, p.total);
  std::cout << describeModel(c, &lora);
}

}  // namespace
}  // namespace loom

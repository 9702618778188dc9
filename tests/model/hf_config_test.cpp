// config.json parsing for qwen3, qwen2 and llama, old and new key spellings, and errors.

#include "loom/model/hf_config.hpp"

#include <gtest/gtest.h>

#include "model_test_util.hpp"

namespace loom {
namespace {

using testing::expectInputError;

constexpr const char* kBase = R"("vocab_size": 300, "hidden_size": 64, "intermediate_size": 96,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2)";

std::string config(const std::string& type, const std::string& extra) {
  return "{\"model_type\": \"" + type + "\", " + kBase + (extra.empty() ? "" : ", " + extra) + "}";
}

TEST(HfConfig, Qwen3WithRopeParametersAndDtype) {
  auto c = parseHfConfig(
      config("qwen3", R"("head_dim": 24, "tie_word_embeddings": true, "dtype": "bfloat16",
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0})"),
      "config.json");
  EXPECT_EQ(c.head_dim, 24);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.kind, "default");
  // transformers' Qwen3Config default head_dim is 128, not hidden/heads.
  EXPECT_EQ(parseHfConfig(config("qwen3", ""), "c").head_dim, 128);
}

TEST(HfConfig, LlamaWithTopLevelThetaAndLlama3RopeScaling) {
  auto c = parseHfConfig(config("llama", R"("rope_theta": 500000.0, "torch_dtype": "float16",
        "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})"),
                         "config.json");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.torch_dtype, "float16");
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.kind, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
}

TEST(HfConfig, Qwen2HasQkvBias) {
  auto c = parseHfConfig(config("qwen2", R"("rope_theta": 1000000.0)"), "config.json");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.head_dim, 16);
}

TEST(HfConfig, UnsupportedModelTypeIsAnInputError) {
  expectInputError([] { parseHfConfig(config("mistral", ""), "/m/config.json"); },
                   {"/m/config.json", "unsupported model_type 'mistral'"});
}

TEST(HfConfig, MissingOrIllTypedKeysAreInputErrors) {
  expectInputError([] { parseHfConfig(R"({"model_type": "llama"})", "/m/config.json"); },
                   {"/m/config.json", "vocab_size"});
  expectInputError(
      [] { parseHfConfig(config("llama", R"("rms_norm_eps": "small")"), "/m/config.json"); },
      {"/m/config.json", "rms_norm_eps"});
  expectInputError(
      [] {
        parseHfConfig(config("llama", R"("rope_scaling": {"rope_type": "yarn",
        "factor": 4.0})"),
                      "/m/config.json");
      },
      {"/m/config.json", "yarn"});
  expectInputError([] { parseHfConfig("{not json", "/m/config.json"); },
                   {"/m/config.json", "not valid JSON"});
}

}  // namespace
}  // namespace loom

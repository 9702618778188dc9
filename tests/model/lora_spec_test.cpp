#include <gtest/gtest.h>

#include "loom/core/error.hpp"
#include "loom/model/lora.hpp"

namespace loom {
namespace {

TEST(LoraSpec, RegexTargetsMatchWholeModulePathsLikePeft) {
  LoraSpec spec;
  spec.target_modules.clear();
  spec.target_regex = R"(.*\.layers\.[01]\.self_attn\.(q|v)_proj)";
  EXPECT_TRUE(spec.targets("model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(spec.targets("model.layers.1.self_attn.v_proj"));
  EXPECT_FALSE(spec.targets("model.layers.0.self_attn.k_proj"));
  EXPECT_FALSE(spec.targets("model.layers.2.self_attn.q_proj"));
  // re.fullmatch semantics: a prefix match is not enough.
  EXPECT_FALSE(spec.targets("model.layers.0.self_attn.q_proj.extra"));
  EXPECT_FALSE(spec.targets("lm_head"));
  EXPECT_NO_THROW(spec.validate("adapter_config.json"));
  spec.target_regex = "(unclosed";
  try {
    spec.validate("adapter_config.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not a valid regular expression"), std::string::npos);
  }
}

TEST(LoraSpec, NamedTargetsMatchTheLastComponent) {
  LoraSpec spec;
  spec.target_modules = {"q_proj", "down_proj"};
  EXPECT_TRUE(spec.targets("model.layers.3.self_attn.q_proj"));
  EXPECT_TRUE(spec.targets("model.layers.3.mlp.down_proj"));
  EXPECT_FALSE(spec.targets("model.layers.3.mlp.up_proj"));
}

}  // namespace
}  // namespace loom

// Config parsing and validation, in process. The command-line view of the same errors
// (exit code 2, message on stderr) is tested in tests/main/cli_test.cpp.
#include "loom/config/config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "loom/core/error.hpp"

namespace loom {
namespace {

const char* kMinimal = R"(model:
  path: /models/qwen3
data:
  train: /data/train.h5
train:
  global_batch_tokens: 4096
  max_steps: 10
)";

std::string errorOf(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parseConfig(yaml, "test.yaml", overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, MinimalFileGetsDefaults) {
  const Config c = parseConfig(kMinimal, "test.yaml");
  EXPECT_EQ(c.model.path, "/models/qwen3");
  EXPECT_EQ(c.model.dtype, DType::kBF16);
  EXPECT_EQ(c.finetune.method, FinetuneMethod::kLora);
  EXPECT_EQ(c.finetune.lora.targets, loraTargetNames());
  EXPECT_EQ(c.train.global_batch_tokens.value(), 4096);
  EXPECT_FALSE(c.train.global_batch_size.has_value());
  EXPECT_EQ(c.train.max_steps.value(), 10);
  EXPECT_EQ(c.cluster.backend, Backend::kAuto);
  EXPECT_TRUE(c.cluster.overlap_grad_sync);
  EXPECT_EQ(c.where("data.train"), "test.yaml:4:10");
}

TEST(Config, ResolvedYamlRoundTrips) {
  const std::string yaml = std::string(kMinimal) + R"(finetune:
  method: lora
  adapter: /adapters/a
  lora: {r: 4, alpha: 8.5, dropout: 0.1, targets: [v_proj, q_proj], rslora: true}
cluster:
  backend: mpi
  balance: static
  overlap_grad_sync: false
  ranks:
    - match: {host: nodeA, local_rank: 1, gpu: "1050"}
      device: cuda:1
      weight: 0.25
      micro_batch: 2
      dtype: fp32
      loss_chunk_tokens: 256
      gradient_checkpointing: true
)";
  const Config a = parseConfig(yaml, "a.yaml");
  EXPECT_EQ(a.finetune.lora.targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  const std::string emitted = toYaml(a);
  const Config b = parseConfig(emitted, "b.yaml");
  EXPECT_EQ(toYaml(b), emitted);
  ASSERT_EQ(b.cluster.ranks.size(), 1u);
  EXPECT_EQ(b.cluster.ranks[0].match_gpu.value(), "1050");
  EXPECT_DOUBLE_EQ(b.cluster.ranks[0].weight.value(), 0.25);
  EXPECT_EQ(b.cluster.ranks[0].dtype.value(), DType::kFP32);
  EXPECT_EQ(b.cluster.ranks[0].loss_chunk_tokens.value(), 256);
  EXPECT_TRUE(b.cluster.ranks[0].gradient_checkpointing.value());
  EXPECT_NE(errorOf(std::string(kMinimal) + "cluster:\n  ranks:\n    - {loss_chunk_tokens: 8}\n")
                .find("cluster.ranks[0].loss_chunk_tokens"),
            std::string::npos);
  EXPECT_EQ(b.finetune.adapter.value(), "/adapters/a");
  EXPECT_TRUE(b.finetune.lora.rslora);
  EXPECT_FALSE(b.cluster.overlap_grad_sync);
}

TEST(Config, OverridesApplyAndAreValidated) {
  const Config c = parseConfig(kMinimal, "t.yaml",
                               {"train.lr=3e-4", "model.dtype=fp16", "run.seed=7",
                                "finetune.lora.targets=[q_proj]", "cluster.backend=mpi"});
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.model.dtype, DType::kFP16);
  EXPECT_EQ(c.run.seed, 7);
  EXPECT_EQ(c.finetune.lora.targets, std::vector<std::string>{"q_proj"});
  EXPECT_EQ(c.where("train.lr"), "--set train.lr=3e-4");

  const std::string e = errorOf(kMinimal, {"train.lr=-1"});
  EXPECT_NE(e.find("--set train.lr=-1"), std::string::npos) << e;
  EXPECT_NE(e.find("train.lr"), std::string::npos) << e;
  EXPECT_NE(errorOf(kMinimal, {"nokey"}).find("expected key.path=value"), std::string::npos);
}

// An error in what a --set wrote is blamed on that --set, never on a place in the file: an
// unknown key the override created, an element of a list it set, a value under a mapping it
// created.
TEST(Config, ErrorsInAnOverrideNameTheOverride) {
  std::string e = errorOf(kMinimal, {"trian.lr=1e-3"});
  EXPECT_NE(e.find("--set trian.lr=1e-3: trian: unknown key; did you mean 'train'?"),
            std::string::npos)
      << e;
  e = errorOf(kMinimal, {"finetune.lora.targets=[q_proj, [x]]"});
  EXPECT_NE(e.find("--set finetune.lora.targets=[q_proj, [x]]"), std::string::npos) << e;
  EXPECT_EQ(e.find("test.yaml:"), std::string::npos) << e;
  e = errorOf(kMinimal, {"finetune.lora.targets=[q_proj,qq_proj]"});
  EXPECT_NE(e.find("--set finetune.lora.targets=[q_proj,qq_proj]: finetune.lora.targets[1]: "
                   "unknown LoRA target 'qq_proj'"),
            std::string::npos)
      << e;
  e = errorOf(kMinimal, {"cluster.rankz.0=1"});
  EXPECT_NE(e.find("--set cluster.rankz.0=1"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key"), std::string::npos) << e;
}

TEST(Config, OverrideIntoListByIndex) {
  const std::string yaml = std::string(kMinimal) + "cluster:\n  ranks:\n    - {weight: 1}\n";
  const Config c = parseConfig(yaml, "t.yaml", {"cluster.ranks.0.weight=3"});
  EXPECT_DOUBLE_EQ(c.cluster.ranks.at(0).weight.value(), 3.0);
  EXPECT_NE(errorOf(yaml, {"cluster.ranks.4.weight=3"}).find("not an index"), std::string::npos);
}

TEST(Config, PathsExpandEnvironmentPlaceholders) {
  ::setenv("LOOM_TEST_JOB", "4242", 1);
  ::unsetenv("LOOM_TEST_UNSET");
  const Config c = parseConfig(
      std::string(kMinimal) + "run: {output_dir: 'runs/${LOOM_TEST_JOB}/${LOOM_TEST_UNSET:-a}'}\n",
      "t.yaml", {"data.eval=/data/${LOOM_TEST_JOB}.h5"});
  EXPECT_EQ(c.run.output_dir, "runs/4242/a");
  EXPECT_EQ(c.data.eval.value(), "/data/4242.h5");
  // The resolved config holds the expanded value and reads back to itself.
  const std::string emitted = toYaml(c);
  EXPECT_NE(emitted.find("output_dir: runs/4242/a\n"), std::string::npos) << emitted;
  ::setenv("LOOM_TEST_JOB", "$x", 1);
  const Config d =
      parseConfig(std::string(kMinimal) + "run: {output_dir: 'r/${LOOM_TEST_JOB}'}\n", "t.yaml");
  EXPECT_EQ(d.run.output_dir, "r/$x");
  EXPECT_EQ(parseConfig(toYaml(d), "again.yaml").run.output_dir, "r/$x");
  ::unsetenv("LOOM_TEST_JOB");
}

TEST(Config, AnUnsetVariableIsAnErrorAtItsKey) {
  ::unsetenv("LOOM_TEST_UNSET");
  const std::string e =
      errorOf(std::string(kMinimal) + "run:\n  output_dir: runs/${LOOM_TEST_UNSET}\n");
  EXPECT_NE(
      e.find("test.yaml:9:15: run.output_dir: environment variable LOOM_TEST_UNSET is not set"),
      std::string::npos)
      << e;
  const std::string o = errorOf(kMinimal, {"run.output_dir=$LOOM_TEST_UNSET"});
  EXPECT_NE(o.find("--set run.output_dir=$LOOM_TEST_UNSET: run.output_dir"), std::string::npos)
      << o;
  EXPECT_NE(o.find("${NAME}"), std::string::npos) << o;
}

TEST(Config, ErrorsNameFileLineAndColumn) {
  const std::string e = errorOf(std::string(kMinimal) + "run:\n  seed: -3\n");
  EXPECT_NE(e.find("test.yaml:9:9: run.seed"), std::string::npos) << e;
  EXPECT_NE(e.find(">= 0"), std::string::npos) << e;
  EXPECT_NE(e.find("'-3'"), std::string::npos) << e;
}

TEST(Config, UnknownKeySuggestsTheClosest) {
  const std::string e = errorOf(std::string(kMinimal) + "checkpoint:\n  evrey: 3\n");
  EXPECT_NE(e.find("checkpoint.evrey: unknown key; did you mean 'every'?"), std::string::npos) << e;
  const std::string s = errorOf(std::string(kMinimal) + "chekpoint: {}\n");
  EXPECT_NE(s.find("did you mean 'checkpoint'?"), std::string::npos) << s;
}

TEST(Config, EmptyAndNonMappingFiles) {
  EXPECT_NE(errorOf("").find("the file is empty"), std::string::npos);
  EXPECT_NE(errorOf("- a\n- b\n").find("found a list"), std::string::npos);
  EXPECT_NE(errorOf("model: [unclosed\n").find("not valid YAML"), std::string::npos);
}

}  // namespace
}  // namespace loom

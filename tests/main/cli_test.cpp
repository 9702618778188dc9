// The trainer's command line as a user meets it: exit codes and messages for bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::runProcess;
using testing::TempDir;
using testing::trainerPath;

const std::string kBase = R"(run:
  name: t
  output_dir: /tmp/loom-cli-test-run
model:
  path: /models/qwen3
  dtype: bf16
finetune:
  method: lora
  lora: {r: 8, alpha: 16}
data:
  train: /data/train.h5
  seq_len: 512
train:
  global_batch_tokens: 4096
  max_steps: 10
  lr: 1.0e-4
checkpoint:
  every: 5
cluster:
  backend: auto
)";

/// Replaces the first occurrence of `from` in kBase by `to` (the case's one mistake).
std::string mutate(const std::string& from, const std::string& to) {
  std::string s = kBase;
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

struct BadConfig {
  std::string name;
  std::string yaml;
  std::string key;       // the key path the message must name
  std::string location;  // "file.yaml:L:C" fragment, or "" when not positional
  std::string hint;      // something of what is allowed
};

std::vector<BadConfig> badConfigs() {
  return {
      {"UnknownTopSection", kBase + "trian: {}\n", "trian", ":21:1", "did you mean 'train'"},
      {"UnknownKeyTypo", mutate("  lr: 1.0e-4", "  lrr: 1.0e-4"), "train.lrr", ":16:3",
       "did you mean 'lr'"},
      {"WrongTypeInt", mutate("seq_len: 512", "seq_len: long"), "data.seq_len", ":12:12",
       "expected an integer"},
      {"IntOutOfRange", mutate("seq_len: 512", "seq_len: 4"), "data.seq_len", ":12:12",
       "in [16, 1048576]"},
      {"NegativeLr", mutate("lr: 1.0e-4", "lr: -0.1"), "train.lr", ":16:7", "(0, 1]"},
      {"BadDtypeEnum", mutate("dtype: bf16", "dtype: bfloat16"), "model.dtype", ":6:10",
       "bf16|fp16|fp32"},
      {"BadMethodEnum", mutate("method: lora", "method: lorax"), "finetune.method", ":8:11",
       "did you mean 'lora'"},
      {"MissingModelPath", mutate("  path: /models/qwen3\n", ""), "model.path", "",
       "missing required key"},
      {"MissingDataSection", mutate("data:\n  train: /data/train.h5\n  seq_len: 512\n", ""), "data",
       "", "missing required section"},
      {"BothBatchKeys", mutate("  max_steps: 10", "  max_steps: 10\n  global_batch_size: 8"),
       "train.global_batch_size", ":16:22", "mutually exclusive"},
      {"NoBatchKey", mutate("  global_batch_tokens: 4096\n", ""), "train.global_batch_tokens", "",
       "one of global_batch_tokens"},
      {"BothStepsAndEpochs", mutate("  max_steps: 10", "  max_steps: 10\n  epochs: 2"),
       "train.epochs", ":16:11", "mutually exclusive"},
      {"UnknownLoraTarget",
       mutate("lora: {r: 8, alpha: 16}", "lora: {r: 8, targets: [q_proj, qproj]}"),
       "finetune.lora.targets[1]", ":9:34", "did you mean 'q_proj'"},
      {"LoraRankZero", mutate("lora: {r: 8, alpha: 16}", "lora: {r: 0}"), "finetune.lora.r",
       ":9:13", "in [1, 4096]"},
      {"BadBool", mutate("seq_len: 512", "seq_len: 512\n  packing: maybe"), "data.packing",
       ":13:12", "true or false"},
      {"BadBackend", mutate("backend: auto", "backend: gloo"), "cluster.backend", ":20:12",
       "auto|nccl|mpi"},
      {"RanksNotAList", kBase + "  ranks: {device: cpu}\n", "cluster.ranks", ":21:10",
       "expected a list"},
      {"BadDevice", kBase + "  ranks:\n    - device: gpu0\n", "cluster.ranks[0].device", ":22:15",
       "cpu, cuda or cuda:N"},
      {"ZeroWeight", kBase + "  ranks:\n    - weight: 0\n", "cluster.ranks[0].weight", ":22:15",
       "(0, 1e+06]"},
      {"UnknownMatchKey", kBase + "  ranks:\n    - match: {hostname: a}\n",
       "cluster.ranks[0].match.hostname", ":22:15", "did you mean 'host'"},
      {"KeepZero", mutate("every: 5", "every: 5\n  keep: 0"), "checkpoint.keep", ":19:9",
       "in [1, "},
      {"ResumeNowhere", mutate("every: 5", "every: 5\n  resume: /nowhere/step-5"),
       "checkpoint.resume", ":19:11", "is not a checkpoint folder"},
      {"WarmupPastEnd", mutate("lr: 1.0e-4", "lr: 1.0e-4\n  warmup_steps: 50"),
       "train.warmup_steps", ":17:17", "exceeds max_steps"},
      {"AdapterWithFull", mutate("method: lora", "method: full\n  adapter: /a"), "finetune.adapter",
       ":9:12", "cannot be combined"},
      {"UnsetVariable",
       mutate("output_dir: /tmp/loom-cli-test-run", "output_dir: /tmp/${LOOM_CLI_TEST_UNSET}"),
       "run.output_dir", ":3:15", "environment variable LOOM_CLI_TEST_UNSET is not set"},
      {"InvalidYaml", mutate("seq_len: 512", "seq_len: [512"), "", ":", "not valid YAML"},
  };
}

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, ExitsWithCode2AndNamesTheKey) {
  const BadConfig& c = GetParam();
  TempDir dir;
  const auto file = dir.write("run.yaml", c.yaml);
  const auto r = runProcess({trainerPath(), "--config", file.string(), "--print-config"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(file.string()), std::string::npos) << "names the file:\n" << r.output;
  EXPECT_NE(r.output.find(c.key), std::string::npos) << "names " << c.key << ":\n" << r.output;
  if (!c.location.empty()) {
    EXPECT_NE(r.output.find(file.string() + c.location), std::string::npos)
        << "points at " << c.location << ":\n"
        << r.output;
  }
  EXPECT_NE(r.output.find(c.hint), std::string::npos) << "says " << c.hint << ":\n" << r.output;
  // One line a user can act on, not a stack trace.
  EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Cli, BadConfigTest, ::testing::ValuesIn(badConfigs()),
                         [](const auto& info) { return info.param.name; });

TEST(Cli, OverrideErrorsNameTheOverride) {
  TempDir dir;
  const auto file = dir.write("run.yaml", kBase);
  auto r = runProcess(
      {trainerPath(), "--config", file.string(), "--set", "train.max_steps=ten", "--print-config"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--set train.max_steps=ten: train.max_steps: expected an integer"),
            std::string::npos)
      << r.output;
  r = runProcess(
      {trainerPath(), "--config", file.string(), "--set", "model.dtyp=fp32", "--print-config"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("did you mean 'dtype'"), std::string::npos) << r.output;
  r = runProcess(
      {trainerPath(), "--config", file.string(), "--set", "train.lr=3e-4", "--print-config"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("lr: 0.0003\n"), std::string::npos) << r.output;
}

TEST(Cli, CommandLineErrorsExitWith2) {
  EXPECT_EQ(runProcess({trainerPath(), "--no-such-flag"}).exit_code, 2);
  const auto missing = runProcess({trainerPath(), "--dry-run"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--config FILE is required"), std::string::npos) << missing.output;
  const auto nofile = runProcess({trainerPath(), "--config", "/nonexistent/run.yaml"});
  EXPECT_EQ(nofile.exit_code, 2);
  EXPECT_NE(nofile.output.find("/nonexistent/run.yaml"), std::string::npos) << nofile.output;
  TempDir dir;
  const auto file = dir.write("run.yaml", kBase);
  const auto level = runProcess({trainerPath(), "--config", file.string(), "--log-level", "loud"});
  EXPECT_EQ(level.exit_code, 2);
  EXPECT_NE(level.output.find("--log-level"), std::string::npos) << level.output;
}

TEST(Cli, VersionAndHelp) {
  const auto v = runProcess({trainerPath(), "--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_TRUE(std::regex_search(v.output, std::regex("trainer \\(Loom\\) [0-9]+\\.[0-9]+")))
      << v.output;
  const auto h = runProcess({trainerPath(), "--help"});
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.output.find("--dry-run"), std::string::npos);
  EXPECT_NE(h.output.find("--set"), std::string::npos);
}

TEST(Cli, DryRunPrintsTheWorld) {
  TempDir dir;
  const auto file =
      dir.write("run.yaml", kBase + "  ranks:\n    - {device: cpu, weight: 2.5, micro_batch: 3}\n");
  const auto r = runProcess({trainerPath(), "--config", file.string(), "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("world: 1 rank(s), backend mpi"), std::string::npos) << r.output;
  EXPECT_TRUE(
      std::regex_search(r.output, std::regex("\\n0 +\\S+ +0 +cpu +- +mpi +2\\.500 +3 +fp32")))
      << r.output;
  EXPECT_NE(r.output.find("the CPU computes in fp32"), std::string::npos) << r.output;
}

TEST(Cli, ShippedConfigsAreValid) {
  int checked = 0;
  for (const char* dir : {"configs", "cluster"}) {
    for (const auto& entry : std::filesystem::directory_iterator(testing::sourceDir() / dir)) {
      if (entry.path().extension() != ".yaml") continue;
      const auto r =
          runProcess({trainerPath(), "--config", entry.path().string(), "--print-config"});
      EXPECT_EQ(r.exit_code, 0) << entry.path() << "\n" << r.output;
      ++checked;
    }
  }
  EXPECT_GE(checked, 2);
}

TEST(Cli, DryRunRejectsADeviceTheHostLacks) {
  TempDir dir;
  const auto file = dir.write("run.yaml", kBase + "  ranks:\n    - {device: \"cuda:7\"}\n");
  const auto r = runProcess({trainerPath(), "--config", file.string(), "--dry-run"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cluster.ranks[0].device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(file.string() + ":22:"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace loom

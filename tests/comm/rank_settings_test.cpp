#include "loom/comm/rank_settings.hpp"

#include <gtest/gtest.h>

#include "loom/core/error.hpp"

namespace loom {
namespace {

const GpuInfo kRtx3080{0, "NVIDIA GeForce RTX 3080", 8, 6, 20LL << 30};
const GpuInfo kGtx1050Ti{1, "NVIDIA GeForce GTX 1050 Ti", 6, 1, 4LL << 30};
const GpuInfo kRtx2080{0, "NVIDIA GeForce RTX 2080", 7, 5, 8LL << 30};

Config configWith(const std::string& cluster_yaml, const std::string& dtype = "bf16") {
  return parseConfig("model: {path: m, dtype: " + dtype +
                         "}\ndata: {train: t.h5}\ntrain: {global_batch_size: 8, max_steps: 1}\n" +
                         cluster_yaml,
                     "c.yaml");
}

TEST(RankSettings, DefaultsFollowLocalRankAndDevice) {
  const Config c = configWith("");
  const std::vector<GpuInfo> box = {kRtx3080, kGtx1050Ti};
  const auto r0 = resolveRankSettings(c, 0, 0, "box", box);
  EXPECT_EQ(r0.device, "cuda:0");
  EXPECT_EQ(r0.dtype, DType::kBF16);
  EXPECT_TRUE(r0.dtype_note.empty());
  const auto r1 = resolveRankSettings(c, 1, 1, "box", box);
  EXPECT_EQ(r1.device, "cuda:1");
  EXPECT_EQ(r1.gpu_name, kGtx1050Ti.name);
  // Pascal: no bf16 and fp16 at 1/64 rate, so fp32.
  EXPECT_EQ(r1.dtype, DType::kFP32);
  EXPECT_NE(r1.dtype_note.find("sm_61"), std::string::npos) << r1.dtype_note;
  // Turing: fp16 with loss scaling instead of bf16.
  EXPECT_EQ(resolveRankSettings(c, 0, 0, "t", {kRtx2080}).dtype, DType::kFP16);
  // No GPU: the CPU, in fp32.
  const auto cpu = resolveRankSettings(c, 0, 0, "laptop", {});
  EXPECT_EQ(cpu.device, "cpu");
  EXPECT_EQ(cpu.dtype, DType::kFP32);
  EXPECT_EQ(cpu.weight, 1.0);
  EXPECT_EQ(cpu.micro_batch, 1);
}

TEST(RankSettings, LossChunkAndCheckpointingFollowRulesAndTravelAsJson) {
  const Config c = configWith(R"(cluster:
  ranks:
    - match: {gpu: "1050"}
      loss_chunk_tokens: 256
      gradient_checkpointing: true
)");
  const std::vector<GpuInfo> box = {kRtx3080, kGtx1050Ti};
  const auto big = resolveRankSettings(c, 0, 0, "box", box);
  const auto small = resolveRankSettings(c, 1, 1, "box", box);
  EXPECT_EQ(big.loss_chunk_tokens, 2048);
  EXPECT_FALSE(big.gradient_checkpointing);
  EXPECT_EQ(small.loss_chunk_tokens, 256);
  EXPECT_TRUE(small.gradient_checkpointing);
  const auto back = RankSettings::fromJson(small.toJson());
  EXPECT_EQ(back.loss_chunk_tokens, 256);
  EXPECT_TRUE(back.gradient_checkpointing);
}

TEST(RankSettings, RulesMatchByGpuNameHostAndLocalRankInOrder) {
  const Config c = configWith(R"(cluster:
  ranks:
    - {weight: 2, micro_batch: 8}
    - match: {gpu: "1050"}
      weight: 0.3
      micro_batch: 1
    - match: {host: other}
      weight: 9
    - match: {local_rank: 0}
      dtype: fp16
)");
  const std::vector<GpuInfo> box = {kRtx3080, kGtx1050Ti};
  const auto fast = resolveRankSettings(c, 0, 0, "box", box);
  EXPECT_DOUBLE_EQ(fast.weight, 2.0);
  EXPECT_EQ(fast.micro_batch, 8);
  EXPECT_EQ(fast.dtype, DType::kFP16);  // explicit rule dtype wins over model.dtype
  const auto slow = resolveRankSettings(c, 1, 1, "box", box);
  EXPECT_DOUBLE_EQ(slow.weight, 0.3);
  EXPECT_EQ(slow.micro_batch, 1);
  EXPECT_EQ(resolveRankSettings(c, 2, 1, "other", {kRtx3080}).weight, 9.0);
}

TEST(RankSettings, MissingDeviceIsAnInputErrorNamingTheRule) {
  const Config c = configWith("cluster:\n  ranks:\n    - {device: \"cuda:2\"}\n");
  try {
    resolveRankSettings(c, 0, 0, "box", {kRtx3080});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cluster.ranks[0].device"), std::string::npos) << m;
    EXPECT_NE(m.find("c.yaml:6:"), std::string::npos) << m;
    EXPECT_NE(m.find("1 visible CUDA device"), std::string::npos) << m;
  }
  EXPECT_THROW(resolveRankSettings(configWith("cluster:\n  ranks:\n    - {device: cuda}\n"), 0, 0,
                                   "cpu-only", {}),
               InputError);
}

TEST(RankSettings, BackendAutoIsNcclOnlyWhenEveryRankIsOnCuda) {
  const Config c = configWith("");
  const std::vector<GpuInfo> box = {kRtx3080, kGtx1050Ti};
  std::vector<RankSettings> gpus = {resolveRankSettings(c, 0, 0, "box", box),
                                    resolveRankSettings(c, 1, 1, "box", box)};
  EXPECT_EQ(resolveBackend(c, gpus), Backend::kNccl);
  gpus.push_back(resolveRankSettings(c, 2, 0, "cpu-node", {}));
  EXPECT_EQ(resolveBackend(c, gpus), Backend::kMpi);
  EXPECT_THROW(resolveBackend(configWith("cluster: {backend: nccl}\n"), gpus), InputError);
}

TEST(RankSettings, JsonRoundTrip) {
  const Config c = configWith("");
  const auto s = resolveRankSettings(c, 1, 1, "box", {kRtx3080, kGtx1050Ti});
  const auto t = RankSettings::fromJson(s.toJson());
  EXPECT_EQ(t.toJson(), s.toJson());
}

}  // namespace
}  // namespace loom

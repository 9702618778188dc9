// train/model_setup's memory report: the estimate of every rank of a world and the warning for
// a rank whose estimate exceeds its device's free memory, naming the rank, the numbers and what
// to change.
#include <gtest/gtest.h>

#include "loom/config/config.hpp"
#include "loom/train/model_setup.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

TEST(ModelSetup, MemoryReportWarnsTheRankThatDoesNotFit) {
  testing::TempDir dir("loom-setup");
  dir.write("config.json", R"({"model_type": "qwen3", "vocab_size": 151936, "hidden_size": 2048,
    "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
    "tie_word_embeddings": true, "dtype": "bfloat16"})");
  const Config config = parseConfig("model: {path: " + dir.path().string() +
                                        "}\nfinetune: {method: lora}\ndata: {train: x.h5}\n"
                                        "train: {global_batch_size: 8, max_steps: 1}\n",
                                    "run.yaml");
  RankSettings big, small;
  big.rank = 0;
  big.device = "cuda:0";
  big.dtype = DType::kBF16;
  big.micro_batch = 4;
  small.rank = 1;
  small.device = "cuda:1";
  small.host = "ws";
  small.gpu_name = "GTX 1050 Ti";
  small.dtype = DType::kFP32;
  const WorldMemory memory =
      describeWorldMemory(config, {big, small}, {int64_t{80} << 30, int64_t{4} << 30});
  const auto& lines = memory.lines;
  const auto& warnings = memory.warnings;
  ASSERT_EQ(memory.estimates.size(), 2u);
  EXPECT_EQ(memory.free_bytes[1], int64_t{4} << 30);
  ASSERT_EQ(lines.size(), 2u);
  ASSERT_EQ(warnings.size(), 2u);
  std::cout << lines[0] << "\n" << lines[1] << "\n" << warnings[1] << "\n";
  EXPECT_NE(lines[1].find("rank 1 (cuda:1 GTX 1050 Ti): base "), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("free on the device 4.00 GiB"), std::string::npos) << lines[1];
  EXPECT_TRUE(warnings[0].empty()) << warnings[0];
  for (const char* what : {"rank 1 on ws (cuda:1, GTX 1050 Ti) needs about", "4.00 GiB free",
                           "micro_batch (1)", "data.seq_len (2048)", "gradient_checkpointing",
                           "loss_chunk_tokens (2048)", "finetune.method: qlora"}) {
    EXPECT_NE(warnings[1].find(what), std::string::npos) << what << " in: " << warnings[1];
  }
}

}  // namespace
}  // namespace loom

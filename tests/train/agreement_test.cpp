// Ranks agree before they train (label mpi): ranks that read different data, or data
// prepared with another tokenizer than the model's, end the job at start with exit 2 and a
// message naming the ranks and what differs.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "training_runs.hpp"

namespace loom {
namespace {

using namespace runs;
using testing::runProcess;

TEST(Agreement, RanksReadingDifferentDataRefuseToTrain) {
  // Two ranks launched from different working directories (MPMD), each reading its own
  // "train.h5" (node-local copies that differ): every rank exits 2 at start, naming both
  // ranks, the file and the differing index hashes, instead of training on a wrong plan.
  const fs::path a = fixture().dir.path() / "mpmd-a", b = fixture().dir.path() / "mpmd-b";
  fs::create_directories(a);
  fs::create_directories(b);
  fs::copy_file(fixture().data, a / "train.h5", fs::copy_options::overwrite_existing);
  writeDataset(b / "train.h5", 48, 9);
  RunSpec s{"mpmd", {1, 1}, {1, 1}, "lora", 3};
  s.data = "train.h5";
  const std::string config = writeConfig(s).string();
  const auto started = std::chrono::steady_clock::now();
  const auto r =
      runProcess({testing::requireEnv("LOOM_MPIEXEC"), "--bind-to", "none", "-np", "1", "--wdir",
                  a.string(), testing::trainerPath(), "--config", config, ":", "-np", "1", "--wdir",
                  b.string(), testing::trainerPath(), "--config", config});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("differing data: exit %d after %.1f s\n", r.exit_code, seconds);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_LT(seconds, 30.0);
  EXPECT_NE(r.output.find("the ranks do not agree"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("data.train's index"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1 (host "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("reads train.h5: "), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(runDir(s.name) / "checkpoints"));
}

TEST(Agreement, DataPreparedWithAnotherTokenizerIsRefused) {
  // The model folder holds a tokenizer.json; the dataset records another tokenizer's hash.
  const fs::path model = fixture().dir.path() / "model-with-tokenizer";
  fs::create_directories(model);
  for (const auto& e : fs::directory_iterator(fixture().model)) {
    fs::copy_file(e.path(), model / e.path().filename(), fs::copy_options::overwrite_existing);
  }
  std::ofstream(model / "tokenizer.json") << "{\"model\": {\"type\": \"BPE\"}}\n";
  const fs::path data = fixture().dir.path() / "other-tokenizer.h5";
  writeDataset(data, 64, 5, "0123456789abcdef");
  RunSpec s{"tokenizer-mismatch", {1, 1}, {1, 1}, "lora", 2};
  s.model = model.string();
  s.data = data.string();
  const auto refused = launch(s);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("data.train"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("prepared with another tokenizer (hash 0123456789abcdef)"),
            std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("data.allow_tokenizer_mismatch"), std::string::npos);
  s.name = "tokenizer-mismatch-allowed";
  s.extra = "  log_every: 1\n";
  const fs::path config = writeConfig(s);
  const auto allowed = runProcess({testing::requireEnv("LOOM_MPIEXEC"), "-np", "2", "--bind-to",
                                   "none", testing::trainerPath(), "--config", config.string(),
                                   "--set", "data.allow_tokenizer_mismatch=true"});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
}

}  // namespace
}  // namespace loom

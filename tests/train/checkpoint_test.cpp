// Checkpoint folders: written whole under a temporary name, and a rewrite of an existing
// step-N gives up the old folder only once the new one is in its place.

#include "loom/train/checkpoint.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "loom/config/config.hpp"
#include "loom/train/agreement.hpp"
#include "loom/train/resume_settings.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;

TrainerState stateAt(int64_t step) {
  TrainerState s;
  s.step = step;
  s.cursor = "{}";
  s.weights = {1.0};
  s.config_hash = "abc";
  return s;
}

fs::path writeWith(const fs::path& dir, int64_t step, const std::string& content) {
  return writeCheckpoint(dir, stateAt(step), 5, [&](const fs::path& tmp) {
    std::ofstream(tmp / "payload.txt") << content;
  });
}

std::string readAll(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Checkpoint, RewritingAStepSurvivesACrashBeforeTheSwap) {
  testing::TempDir tmp("loom-ckpt");
  const fs::path dir = tmp.path() / "checkpoints";
  writeWith(dir, 3, "old");
  // A child writes step 3 again and dies (SIGKILL) once the new folder is complete, just
  // before it would take the old one's place. Before the fix the old folder was removed
  // first, so a crash there left no step-3 at all.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::setenv("LOOM_TEST_CRASH_BEFORE_SWAP", "1", 1);
    writeWith(dir, 3, "new");
    ::_exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  const auto newest = newestCheckpoint(dir);
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(newest->filename(), "step-3");
  EXPECT_EQ(readAll(*newest / "payload.txt"), "old");
  EXPECT_EQ(readTrainerState(*newest).step, 3);

  // Without a crash the rewrite replaces it and nothing else stays behind but the
  // crashed writer's temporary folder.
  writeWith(dir, 3, "new");
  EXPECT_EQ(readAll(dir / "step-3" / "payload.txt"), "new");
  int folders = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == "step-3") continue;
    EXPECT_NE(name.find(".tmp-"), std::string::npos) << "left behind: " << name;
    ++folders;
  }
  EXPECT_LE(folders, 1);
}

TEST(Checkpoint, AnOldFolderMovedAsideIsStillTheCheckpointWhileItsNameIsFree) {
  // Filesystems without an atomic exchange move the old folder to ".step-N.replaced" first;
  // a crash between the two renames leaves it there, and it is still step N.
  testing::TempDir tmp("loom-ckpt");
  const fs::path dir = tmp.path() / "checkpoints";
  writeWith(dir, 2, "two");
  writeWith(dir, 4, "four");
  fs::rename(dir / "step-4", dir / ".step-4.replaced");
  const auto newest = newestCheckpoint(dir);
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(readAll(*newest / "payload.txt"), "four");
  // The next write of step 4 takes the name and clears the folder set aside.
  writeWith(dir, 4, "four again");
  EXPECT_EQ(readAll(*newestCheckpoint(dir) / "payload.txt"), "four again");
  EXPECT_FALSE(fs::exists(dir / ".step-4.replaced"));
}

// Checkpoints written before the settings were recorded by key hold only the hash: it must
// not change, or every old checkpoint would be refused. The legacy formula, as it was.
TEST(ResumeSettings, HashIsTheOneOldCheckpointsHold) {
  const Config c = parseConfig(
      "model: {path: /m}\ndata: {train: /d.h5, seq_len: 64}\ntrain: {global_batch_tokens: 320, "
      "max_steps: 3}\nfinetune: {lora: {r: 4, alpha: 8, targets: [q_proj, v_proj]}}\n",
      "t.yaml");
  std::ostringstream legacy;
  legacy << c.model.path << '|' << toString(c.finetune.method) << '|' << c.finetune.lora.r << '|'
         << c.finetune.lora.alpha << '|' << c.finetune.lora.rslora << '|' << c.data.train << '|'
         << c.data.seq_len << '|' << c.data.packing << '|'
         << c.train.global_batch_tokens.value_or(0) << '|' << c.train.global_batch_size.value_or(0)
         << '|' << c.run.seed;
  for (const auto& t : c.finetune.lora.targets) legacy << '|' << t;
  EXPECT_EQ(resumeHash(c), identityHash(legacy.str()));
}

TEST(ResumeSettings, ChangedSettingsAreNamedWithBothValues) {
  const std::string base =
      "model: {path: /m}\ndata: {train: /d.h5, seq_len: 64}\ntrain: {global_batch_tokens: 320, "
      "max_steps: 3}\n";
  const Config a = parseConfig(base + "finetune: {lora: {r: 4}}\n", "a.yaml");
  const Config b = parseConfig(base + "finetune: {lora: {r: 8}}\n", "b.yaml", {"data.seq_len=128"});
  std::map<std::string, std::string> saved;
  for (const auto& [key, value] : resumeSettings(a)) saved[key] = value;
  EXPECT_EQ(changedSettings(saved, b), "finetune.lora.r 4 -> 8, data.seq_len 64 -> 128");
  EXPECT_EQ(changedSettings(saved, a), "");
  EXPECT_EQ(changedSettings({}, b), "") << "an old checkpoint records no settings";
  EXPECT_NE(resumeHash(a), resumeHash(b));

  // They travel in trainer_state.json.
  TrainerState state;
  state.cursor = "{}";
  state.config_hash = resumeHash(a);
  state.resume_settings = saved;
  const TrainerState back = TrainerState::fromJson(state.toJson(), "trainer_state.json");
  EXPECT_EQ(back.resume_settings, saved);
}

}  // namespace
}  // namespace loom

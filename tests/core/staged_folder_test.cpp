// core/staged_folder: a folder appears at its target whole, on commit() only.

#include "loom/core/staged_folder.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

void writeFile(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

TEST(StagedFolder, CommitPutsTheFolderInPlace) {
  TempDir dir;
  const fs::path target = dir.path() / "out" / "model";
  fs::path staging;
  {
    StagedFolder staged(target);
    staging = staged.path();
    EXPECT_EQ(staging.parent_path(), target.parent_path());
    EXPECT_TRUE(fs::is_directory(staging));
    writeFile(staging / "weights.bin", "abc");
    EXPECT_FALSE(fs::exists(target));
    staged.commit();
  }
  EXPECT_EQ(testing::readFile(target / "weights.bin"), "abc");
  EXPECT_FALSE(fs::exists(staging));
}

TEST(StagedFolder, WithoutCommitLeavesNothingAndKeepsTheOldTarget) {
  TempDir dir;
  const fs::path target = dir.path() / "model";
  fs::create_directories(target);
  writeFile(target / "old.txt", "old");
  fs::path staging;
  try {
    StagedFolder staged(target);
    staging = staged.path();
    writeFile(staging / "new.txt", "new");
    throw std::runtime_error("failed half-way");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(staging));
  EXPECT_EQ(testing::readFile(target / "old.txt"), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(StagedFolder, ReplacesAnExistingTargetWhenAllowed) {
  TempDir dir;
  const fs::path target = dir.path() / "model";
  fs::create_directories(target);
  writeFile(target / "old.txt", "old");
  StagedFolder staged(target, /*replace=*/true, dir.path() / "model.tmp-1");
  EXPECT_EQ(staged.path(), dir.path() / "model.tmp-1");
  writeFile(staged.path() / "new.txt", "new");
  staged.commit();
  EXPECT_FALSE(fs::exists(target / "old.txt"));
  EXPECT_EQ(testing::readFile(target / "new.txt"), "new");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1)
      << "the old folder moved aside is removed";
}

TEST(StagedFolder, RefusesATargetThatFilledMeanwhile) {
  TempDir dir;
  const fs::path target = dir.path() / "model";
  StagedFolder staged(target, /*replace=*/false);
  fs::create_directories(target);
  writeFile(target / "other.txt", "x");
  EXPECT_THROW(staged.commit(), Error);
  EXPECT_EQ(testing::readFile(target / "other.txt"), "x");
}

}  // namespace
}  // namespace loom

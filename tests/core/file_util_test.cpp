#include "loom/core/file_util.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;

TEST(FileUtil, WriteFileAtomicReplacesWholeAndLeavesNoTemporary) {
  testing::TempDir dir;
  const fs::path target = dir.path() / "sub" / "a.txt";
  writeFileAtomic(target, "first");
  writeFileAtomic(target, "second version");
  EXPECT_EQ(testing::readFile(target), "second version");
  int entries = 0;
  for (const auto& e : fs::directory_iterator(target.parent_path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(FileUtil, RemoveTreeRemovesNestedFoldersFilesAndLinksButNotLinkTargets) {
  testing::TempDir dir;
  const fs::path keep = dir.write("keep/outside.txt", "x");
  const fs::path tree = dir.path() / "tree";
  dir.write("tree/a/b/c.bin", std::string(1000, 'z'));
  dir.write("tree/a/d.txt", "d");
  dir.write("tree/e.txt", "e");
  fs::create_symlink(keep.parent_path(), tree / "link");
  EXPECT_TRUE(removeTree(tree));
  EXPECT_FALSE(fs::exists(tree));
  EXPECT_TRUE(fs::exists(keep));  // a symbolic link is removed, not followed
  EXPECT_TRUE(removeTree(tree));  // nothing there: still success
  const fs::path file = dir.write("single.txt", "s");
  EXPECT_TRUE(removeTree(file));
  EXPECT_FALSE(fs::exists(file));
}

TEST(FileUtil, ReadFileOrThrowNamesTheFile) {
  try {
    readFileOrThrow("/nonexistent/x.yaml", "config file");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("config file /nonexistent/x.yaml"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos);
  }
}

}  // namespace
}  // namespace loom

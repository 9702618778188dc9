#include "loom/core/staged_folder.hpp"

#include <unistd.h>

#include <string>
#include <utility>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"

namespace loom {

namespace fs = std::filesystem;

StagedFolder::StagedFolder(fs::path target, bool replace, fs::path staging)
    : target_(std::move(target)),
      staging_(staging.empty() ? temporarySibling(target_) : std::move(staging)),
      replace_(replace) {
  if (target_.has_parent_path()) fs::create_directories(target_.parent_path());
  removeTree(staging_);  // left by an earlier process with the same pid
  fs::create_directories(staging_);
}

StagedFolder::~StagedFolder() {
  if (!committed_) removeTree(staging_);
}

void StagedFolder::commit() {
  LOOM_CHECK(!committed_, "StagedFolder::commit() called twice for " << target_);
  fsyncTree(staging_);
  if (fs::exists(target_)) {
    LOOM_CHECK(replace_ || fs::is_empty(target_), target_.string() << " appeared meanwhile");
    fs::path old = target_;
    old += ".old-" + std::to_string(::getpid());
    removeTree(old);
    fs::rename(target_, old);
    fs::rename(staging_, target_);
    removeTree(old);
  } else {
    fs::rename(staging_, target_);
  }
  fsyncPath(target_.has_parent_path() ? target_.parent_path() : fs::path("."));
  committed_ = true;
}

}  // namespace loom

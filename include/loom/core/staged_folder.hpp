#pragma once
// A folder written whole or not at all (DESIGN invariant 4): its files go to a staging folder
// beside the target, and one rename puts them in place. Used for exported models and a run's
// final model/adapter; checkpoints have their own swap (train/checkpoint.cpp), because
// listCheckpoints must read a half-replaced checkpoint and tests crash it between renames.

#include <filesystem>

namespace loom {

/// Creates the staging folder (emptied first) and the target's parent. Destroyed without
/// commit() (an exception on the way), it removes the staging folder, so the target never
/// holds a partial folder. Not thread-safe.
class StagedFolder {
 public:
  /// `replace`: commit() may replace an existing target; otherwise only an empty one (a
  /// target that fills meanwhile is refused with loom::Error). `staging` defaults to
  /// temporarySibling(target) (core/file_util); give one when its name is documented.
  explicit StagedFolder(std::filesystem::path target, bool replace = true,
                        std::filesystem::path staging = {});
  ~StagedFolder();
  StagedFolder(const StagedFolder&) = delete;
  StagedFolder& operator=(const StagedFolder&) = delete;

  /// Where to write the files.
  const std::filesystem::path& path() const { return staging_; }
  const std::filesystem::path& target() const { return target_; }

  /// fsyncs everything under the staging folder, then renames it onto the target. An
  /// existing target is moved aside first and removed last, so a crash between the renames
  /// leaves both folders whole. Call once.
  void commit();

 private:
  std::filesystem::path target_;
  std::filesystem::path staging_;
  bool replace_;
  bool committed_ = false;
};

}  // namespace loom

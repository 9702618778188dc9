#pragma once
// Files written so that a crash never leaves one that looks whole (DESIGN invariant 4):
// data goes to a temporary name beside the target, is fsync'ed, then renamed.

#include <filesystem>
#include <string>

namespace loom {

/// Writes `contents` to `path` atomically (temp file in the same folder, fsync, rename).
void writeFileAtomic(const std::filesystem::path& path, const std::string& contents);

/// Reads a whole file; throws InputError naming the file if it cannot be read.
std::string readFileOrThrow(const std::filesystem::path& path, const std::string& what = "file");

/// fsyncs a file or folder (after a rename, sync the folder so the new name is durable).
void fsyncPath(const std::filesystem::path& path);

/// fsyncs every file under `dir`, then `dir` itself (symbolic links are not followed).
void fsyncTree(const std::filesystem::path& dir);

/// Removes a file or a whole folder tree (like std::filesystem::remove_all, which it
/// replaces on purpose: libtorch wheels export their own, older copy of libstdc++'s
/// filesystem implementation, and calls that bind to it from code compiled with a newer
/// compiler crashed on a non-empty folder, seen on the GPU machine with GCC 13 and torch
/// 2.11). Returns false, without throwing, when something could not be removed.
bool removeTree(const std::filesystem::path& path);

/// A unique temporary name beside `target`: "<dir>/.<name>.tmp-<pid>-<n>".
std::filesystem::path temporarySibling(const std::filesystem::path& target);

}  // namespace loom

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

/// A unique temporary name beside `target`: "<dir>/.<name>.tmp-<pid>-<n>".
std::filesystem::path temporarySibling(const std::filesystem::path& target);

}  // namespace loom

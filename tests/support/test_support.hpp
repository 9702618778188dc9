#pragma once
// Helpers shared by Loom's test suites: temporary folders, running the trainer or a
// Python reference script as a child process, and the paths ctest hands to tests.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace loom::testing {

/// A fresh folder under the system temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "loom-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  /// Writes `text` to `name` inside the folder and returns the full path.
  std::filesystem::path write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

struct ProcessResult {
  int exit_code = -1;  ///< exit status, or 128+signal when killed by a signal
  std::string output;  ///< stdout and stderr together
};

/// Runs `argv` (no shell), capturing stdout+stderr; `stdin` is /dev/null.
ProcessResult runProcess(const std::vector<std::string>& argv);

/// Runs the trainer executable with `args` and echoes the command line, its exit code and
/// its output to stdout (the test log shows what each case ran and printed).
ProcessResult runTrainer(const std::vector<std::string>& args);

/// An environment variable set by ctest (see tests/CMakeLists.txt); fails the test if unset.
std::string requireEnv(const char* name);

/// The trainer executable under test.
std::string trainerPath();
/// The project virtualenv's Python (reference implementations).
std::string pythonPath();
/// The project source root.
std::filesystem::path sourceDir();

/// The message of the loom::InputError that `f` throws, or "(no InputError)".
std::string inputErrorOf(const std::function<void()>& f);

/// The real tokenizer folders (qwen3, qwen2_5, llama3_1): LOOM_QWEN3_TOKENIZER's parent, or
/// <source>/../shared/tokenizers; empty when neither is set.
std::filesystem::path sharedTokenizersDir();

/// Runs tests/python/<script> with the project Python; returns its result.
ProcessResult runPythonScript(const std::string& script, const std::vector<std::string>& args);

/// UTF-8 of a code point of the Basic Multilingual Plane (< U+10000).
std::string codePointToUtf8(uint32_t cp);

/// Reads a whole file.
std::string readFile(const std::filesystem::path& path);

}  // namespace loom::testing

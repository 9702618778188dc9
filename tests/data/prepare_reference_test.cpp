// `trainer prepare` against the reference libraries: the ids in the prepared files equal the
// `tokenizers` library's (and transformers' apply_chat_template for chat formats), for a
// tokenizer trained at test time and for the real Qwen3 tokenizer when it is present.
// The comparison itself is tests/python/prepare_reference.py.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::runPythonScript;
using testing::TempDir;

constexpr const char* kPrompt = "Question: {Question}\\nN = {N} {{braces}}\\n### Answer:\\n";
constexpr const char* kCompletion = "{Response}";

std::string qwen3Dir() {
  const char* dir = std::getenv("LOOM_QWEN3_TOKENIZER");
  if (dir && fs::exists(fs::path(dir) / "tokenizer.json") &&
      fs::exists(fs::path(dir) / "tokenizer_config.json")) {
    return dir;
  }
  return {};
}

/// Prepares `format` from data/<format>.jsonl with the trainer and checks it in Python.
void prepareAndCheck(const TempDir& tmp, const std::string& tokenizer, const std::string& format,
                     const std::string& seq_len) {
  const fs::path input = tmp.path() / "data" / (format + ".jsonl");
  const fs::path output = tmp.path() / (format + ".h5");
  std::vector<std::string> argv = {testing::trainerPath(),
                                   "prepare",
                                   "--no-progress",
                                   "--tokenizer",
                                   tokenizer,
                                   "--input",
                                   input.string(),
                                   "--format",
                                   format,
                                   "--output",
                                   output.string(),
                                   "--seq-len",
                                   seq_len,
                                   "--threads",
                                   "3"};
  std::vector<std::string> check = {"check",        "--h5",      output.string(), "--input",
                                    input.string(), "--format",  format,          "--tokenizer",
                                    tokenizer,      "--seq-len", seq_len};
  if (format == "template") {
    argv.insert(argv.end(), {"--prompt-template", kPrompt, "--completion-template", kCompletion});
    // The Python side gets the templates as the trainer reads them (escapes resolved).
    std::string prompt = kPrompt;
    for (size_t p; (p = prompt.find("\\n")) != std::string::npos;) prompt.replace(p, 2, "\n");
    check.insert(check.end(), {"--prompt-template", prompt, "--completion-template", kCompletion});
  }
  const auto prepared = testing::runProcess(argv);
  ASSERT_EQ(prepared.exit_code, 0) << prepared.output;
  const auto r = runPythonScript("prepare_reference.py", check);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::cout << "[prepare] " << r.output;
}

TEST(PrepareReference, TrainedTokenizerMatchesTokenizersLibrary) {
  TempDir tmp("loom-prepare-ref");
  auto r = runPythonScript("tokenizer_reference.py", {"train", (tmp.path() / "tok").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path dir = tmp.path() / "tok" / "qwen";
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<|endoftext|>"})";
  r = runPythonScript("prepare_reference.py", {"corpus", (tmp.path() / "data").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  prepareAndCheck(tmp, dir.string(), "template", "4096");
  prepareAndCheck(tmp, dir.string(), "text", "48");
}

TEST(PrepareReference, Qwen3AllFormatsMatchTokenizersAndTransformers) {
  const std::string dir = qwen3Dir();
  if (dir.empty()) {
    GTEST_SKIP() << "no Qwen3 tokenizer at LOOM_QWEN3_TOKENIZER; Qwen3 prepare parity not checked";
  }
  TempDir tmp("loom-prepare-ref");
  const auto r =
      runPythonScript("prepare_reference.py", {"corpus", (tmp.path() / "data").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  prepareAndCheck(tmp, dir, "alpaca", "4096");
  prepareAndCheck(tmp, dir, "chat", "4096");
  prepareAndCheck(tmp, dir, "template", "4096");
  prepareAndCheck(tmp, dir, "text", "64");
}

TEST(PrepareReference, Llama3_1AllFormatsMatchTokenizersAndTransformers) {
  // Llama 3.1: its own template (the "Cutting Knowledge Date" system preamble) for the chat
  // formats, and the post-processor's <|begin_of_text|> before text and template samples.
  const fs::path dir = testing::sharedTokenizersDir() / "llama3_1";
  if (!fs::exists(dir / "tokenizer.json")) {
    GTEST_SKIP() << "no Llama 3.1 tokenizer at " << dir << "; Llama 3.1 prepare parity not checked";
  }
  TempDir tmp("loom-prepare-ref");
  const auto r =
      runPythonScript("prepare_reference.py", {"corpus", (tmp.path() / "data").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  prepareAndCheck(tmp, dir.string(), "alpaca", "4096");
  prepareAndCheck(tmp, dir.string(), "chat", "4096");
  prepareAndCheck(tmp, dir.string(), "template", "4096");
  prepareAndCheck(tmp, dir.string(), "text", "64");
}

}  // namespace
}  // namespace loom

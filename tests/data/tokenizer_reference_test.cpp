// Id-for-id parity of loom::Tokenizer with the `tokenizers` library (DESIGN invariant 2),
// on thousands of varied strings, for tokenizers trained at test time and for the real
// Qwen3 tokenizer when it is available; and the post-processor's special tokens of the real
// tokenizers in ../shared/tokenizers.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loom/data/tokenizer.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using nlohmann::json;
using testing::runPythonScript;
using testing::TempDir;

constexpr int kCases = 2500;

class TokenizerParity : public ::testing::Test {
 protected:
  // Trains the reference tokenizers once, on first use: work that can fail stays inside a
  // test (a failure in SetUpTestSuite would be reported as a skip).
  static const TempDir& trainedDir() {
    if (!dir_) {
      dir_ = std::make_unique<TempDir>("loom-tokenizer-parity");
      const auto result =
          runPythonScript("tokenizer_reference.py", {"train", dir_->path().string()});
      train_output_ = result.output;
      trained_ = result.exit_code == 0;
    }
    return *dir_;
  }
  static void TearDownTestSuite() { dir_.reset(); }

  static json referenceCases(const std::filesystem::path& tokenizer_json, const std::string& tag) {
    const auto out = trainedDir().path() / (tag + "_cases.json");
    const auto result =
        runPythonScript("tokenizer_reference.py",
                        {"cases", tokenizer_json.string(), out.string(), std::to_string(kCases)});
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return json::parse(testing::readFile(out));
  }

  // Compares ids, decodings and token offsets of every case.
  static void checkParity(const Tokenizer& tok, const json& cases, const std::string& tag,
                          bool expect_nfc_roundtrip) {
    size_t id_mismatches = 0, decode_mismatches = 0, roundtrip_checked = 0, tokens = 0;
    for (const auto& c : cases.at("cases")) {
      const std::string text = c.at("text").get<std::string>();
      const auto expected = c.at("ids").get<std::vector<int32_t>>();
      std::vector<int32_t> ids;
      std::vector<size_t> starts;
      tok.encode(text, ids, &starts);
      tokens += ids.size();
      if (ids != expected) {
        if (++id_mismatches <= 5) {
          ADD_FAILURE() << tag << ": ids differ for " << json(text).dump()
                        << "\n  loom: " << json(ids).dump()
                        << "\n  tokenizers: " << json(expected).dump();
        }
        continue;
      }
      ASSERT_EQ(starts.size(), ids.size());
      for (size_t i = 0; i < starts.size(); ++i) {
        ASSERT_LE(starts[i], text.size()) << tag << ": " << json(text).dump();
        if (i > 0) ASSERT_GE(starts[i], starts[i - 1]) << tag << ": " << json(text).dump();
      }
      const std::string decoded = tok.decode(ids);
      const std::string decoded_skip = tok.decode(ids, /*skip_special=*/true);
      if (decoded != c.at("decoded").get<std::string>() ||
          decoded_skip != c.at("decoded_skip_special").get<std::string>()) {
        if (++decode_mismatches <= 5) {
          ADD_FAILURE() << tag << ": decode differs for " << json(text).dump()
                        << "\n  loom: " << json(decoded).dump()
                        << "\n  tokenizers: " << c.at("decoded").dump();
        }
      }
      // Byte-level BPE loses nothing but what normalization changes.
      if (expect_nfc_roundtrip) {
        ++roundtrip_checked;
        EXPECT_EQ(decoded, c.at("nfc").get<std::string>()) << tag << ": " << json(text).dump();
      }
    }
    std::cout << "[parity] " << tag << ": " << cases.at("cases").size() << " strings, " << tokens
              << " tokens, " << id_mismatches << " id mismatches, " << decode_mismatches
              << " decode mismatches, " << roundtrip_checked << " round trips checked\n";
    EXPECT_EQ(id_mismatches, 0u) << tag;
    EXPECT_EQ(decode_mismatches, 0u) << tag;
  }

  void runVariant(const std::string& variant, bool expect_nfc_roundtrip) {
    const auto file = trainedDir().path() / variant / "tokenizer.json";
    ASSERT_TRUE(trained_) << "training the reference tokenizers failed:\n" << train_output_;
    const Tokenizer tok = Tokenizer::fromFile(file);
    checkParity(tok, referenceCases(file, variant), variant, expect_nfc_roundtrip);
  }

  static std::unique_ptr<TempDir> dir_;
  static std::string train_output_;
  static bool trained_;
};

std::unique_ptr<TempDir> TokenizerParity::dir_;
std::string TokenizerParity::train_output_;
bool TokenizerParity::trained_ = false;

TEST_F(TokenizerParity, TrainedQwenStyle) { runVariant("qwen", /*expect_nfc_roundtrip=*/true); }

TEST_F(TokenizerParity, TrainedQwenStyleLegacyMerges) {
  runVariant("qwen_legacy", /*expect_nfc_roundtrip=*/true);
}

TEST_F(TokenizerParity, TrainedLlama3Style) {
  runVariant("llama3", /*expect_nfc_roundtrip=*/false);
}

TEST_F(TokenizerParity, TrainedGpt2StyleWithAddedTokenFlags) {
  runVariant("gpt2", /*expect_nfc_roundtrip=*/false);
}

TEST_F(TokenizerParity, Qwen3) {
  const char* dir = std::getenv("LOOM_QWEN3_TOKENIZER");
  if (!dir || !std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    GTEST_SKIP() << "no Qwen3 tokenizer at LOOM_QWEN3_TOKENIZER=" << (dir ? dir : "(unset)")
                 << "; parity with the real Qwen3 tokenizer not checked";
  }
  const Tokenizer tok = Tokenizer::fromDir(dir);
  EXPECT_EQ(tok.vocabSize(), 151669);
  EXPECT_EQ(tok.eosId(), 151645);  // <|im_end|>
  EXPECT_EQ(tok.padId(), 151643);  // <|endoftext|>
  EXPECT_FALSE(tok.bosId().has_value());
  checkParity(tok, referenceCases(std::filesystem::path(dir) / "tokenizer.json", "qwen3"), "qwen3",
              /*expect_nfc_roundtrip=*/true);
}

// The real tokenizers in ../shared/tokenizers (Qwen3, Qwen2.5, Llama 3.1): the post-processor's
// ids around encode() equal the library's encode(text, add_special_tokens=True).
TEST(TokenizerPostProcessor, PrefixAndSuffixMatchTheLibrary) {
  const char* qwen3 = std::getenv("LOOM_QWEN3_TOKENIZER");
  const std::filesystem::path root = qwen3 && *qwen3
                                         ? std::filesystem::path(qwen3).parent_path()
                                         : testing::sourceDir() / ".." / "shared" / "tokenizers";
  const std::vector<std::pair<std::string, std::vector<int32_t>>> expected_prefix = {
      {"qwen3", {}}, {"qwen2_5", {}}, {"llama3_1", {128000}}};  // <|begin_of_text|>
  TempDir out("loom-tokenizer-special");
  int checked = 0;
  for (const auto& [name, prefix] : expected_prefix) {
    const auto file = root / name / "tokenizer.json";
    if (!std::filesystem::exists(file)) {
      std::cout << "[special] no " << file << "; not checked\n";
      continue;
    }
    const Tokenizer tok = Tokenizer::fromFile(file);
    EXPECT_EQ(tok.specialPrefix(), prefix) << name;
    EXPECT_TRUE(tok.specialSuffix().empty()) << name;
    const auto cases_file = out.path() / (name + ".json");
    const auto result =
        runPythonScript("tokenizer_reference.py", {"special", file.string(), cases_file.string()});
    ASSERT_EQ(result.exit_code, 0) << result.output;
    const json cases = json::parse(testing::readFile(cases_file));
    for (const auto& c : cases.at("cases")) {
      const std::string text = c.at("text").get<std::string>();
      std::vector<int32_t> ids = tok.specialPrefix();
      tok.encode(text, ids);
      ids.insert(ids.end(), tok.specialSuffix().begin(), tok.specialSuffix().end());
      EXPECT_EQ(ids, c.at("ids_with_special").get<std::vector<int32_t>>())
          << name << ": " << json(text).dump();
      EXPECT_EQ(tok.encode(text), c.at("ids").get<std::vector<int32_t>>())
          << name << ": " << json(text).dump();
      ++checked;
    }
  }
  std::cout << "[special] " << checked << " strings checked under " << root << "\n";
  if (checked == 0) GTEST_SKIP() << "no tokenizer under " << root;
}

}  // namespace
}  // namespace loom

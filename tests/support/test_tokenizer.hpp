#pragma once
// A small byte-level BPE tokenizer written by hand for tests that need a real tokenizer folder
// without the real (large) ones: Qwen's pre-tokenizer, a few merges, and the special tokens
// of a chat family.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace loom {
class Tokenizer;
}  // namespace loom

namespace loom::testing {

/// An added token entry of tokenizer.json (special, not normalized).
nlohmann::json addedToken(int id, const std::string& content);

/// Writes tokenizer.json + tokenizer_config.json into `dir`. `family`: "qwen" (ChatML tokens)
/// or "llama3" (header tokens); `with_eos` false leaves eos_token out of the config.
void writeTokenizer(const std::filesystem::path& dir, const std::string& family = "qwen",
                    bool with_eos = true);

/// The text of the tokens of `ids` whose mask value is `want` (1: targets, 0: context).
std::string decodeMasked(const Tokenizer& tok, const std::vector<int32_t>& ids,
                         const std::vector<uint8_t>& mask, uint8_t want);

}  // namespace loom::testing

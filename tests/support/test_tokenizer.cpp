#include "support/test_tokenizer.hpp"

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "loom/data/tokenizer.hpp"
#include "support/test_support.hpp"

namespace loom::testing {

using nlohmann::json;
namespace fs = std::filesystem;

nlohmann::json addedToken(int id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

void writeTokenizer(const std::filesystem::path& dir, const std::string& family, bool with_eos) {
  fs::create_directories(dir);
  std::vector<std::string> chars(256);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    chars[b] = codePointToUtf8(direct ? b : next++);
  }
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[chars[b]] = b;
  // A few merges so that tokens are not all single bytes.
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"t", "h"}, {"th", "e"}, {"Ġ", "th"}, {"Ġth", "e"}, {"a", "n"},
      {"Ġ", "a"}, {"e", "r"},  {"i", "n"},  {"o", "u"},   {"Ġ", "w"}};
  json merge_list = json::array();
  int id = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    merge_list.push_back(json::array({a, b}));
  }
  const std::vector<std::string> specials =
      family == "qwen"
          ? std::vector<std::string>{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
          : std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                     "<|end_header_id|>", "<|eot_id|>"};
  json added = json::array();
  for (const auto& s : specials) added.push_back(addedToken(id++, s));
  const json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern",
                {{"Regex",
                  R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"},
               {"add_prefix_space", false},
               {"trim_offsets", false},
               {"use_regex", false}}})}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merge_list}}}};
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump();
  json config = json::object();
  if (with_eos) config["eos_token"] = family == "qwen" ? "<|im_end|>" : "<|eot_id|>";
  config["pad_token"] = family == "qwen" ? "<|endoftext|>" : "<|end_of_text|>";
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
}

std::string decodeMasked(const Tokenizer& tok, const std::vector<int32_t>& ids,
                         const std::vector<uint8_t>& mask, uint8_t want) {
  std::vector<int32_t> picked;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (mask[i] == want) picked.push_back(ids[i]);
  }
  return tok.decode(picked);
}

}  // namespace loom::testing

#pragma once
// The loaded tables of a Tokenizer (not a public header), shared by the files that fill them
// (tokenizer_load.cpp) and the ones that encode with them (tokenizer_pipeline.cpp for added
// tokens, normalization and pre-tokenization, tokenizer_bpe.cpp for the BPE merge).

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bpe_merge_table.hpp"
#include "token_trie.hpp"
#include "tokenizer_text.hpp"

namespace loom::detail {

struct AddedToken {
  std::string content;
  std::string pattern;  // what is matched: content, or its normalized form when normalized
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

struct MergeScratch;  // tokenizer_bpe.cpp

struct TokenizerImpl {
  std::filesystem::path file;
  std::string hash;
  uint64_t instance = 0;

  // Normalizer: forms applied in order (empty = none).
  std::vector<NormalizationForm> normalizers;

  // Pre-tokenizers: Isolated splits in order; the ByteLevel prefix space is added to each
  // piece reaching level `prefix_level`; with use_regex the GPT-2 split is the last level.
  std::vector<std::unique_ptr<OnigCompatibleRegex>> splits;
  bool add_prefix_space = false;
  size_t prefix_level = 0;

  // Model.
  std::array<int32_t, 256> byte_id{};  // id of each byte's single-character token, -1 if none
  MergeTable merges;
  std::vector<std::string> model_raw;                       // raw bytes of each model token
  std::unordered_map<std::string_view, int32_t> raw_vocab;  // views into model_raw -> id
  bool ignore_merges = false;
  int32_t unk_id = -1;
  bool fuse_unk = false;

  // Added tokens.
  std::vector<AddedToken> added;
  TokenTrie raw_trie;         // normalized == false
  TokenTrie normalized_trie;  // normalized == true

  // Per id: vocabulary string, decoded bytes, raw length, special flag.
  std::vector<std::string> id_token;
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> id_known;
  std::vector<uint8_t> id_special;
  std::unordered_map<std::string, int32_t> token_id;  // vocabulary string -> id

  std::optional<int32_t> eos, pad, bos;

  // Post-processor: ids put before / after a single sequence (add_special_tokens=True).
  std::vector<int32_t> special_prefix;
  std::vector<int32_t> special_suffix;

  void encodeText(std::string_view text, std::vector<int32_t>& ids,
                  std::vector<size_t>* starts) const;

 private:
  template <typename Emit>
  void splitAddedTokens(std::string_view text, const TokenTrie& trie, Emit&& emit) const;
  void encodeNormalized(std::string_view piece, size_t base, std::vector<int32_t>& ids,
                        std::vector<size_t>* starts) const;
  void preTokenize(std::string_view piece, size_t level, size_t base, bool prefixed,
                   std::vector<int32_t>& ids, std::vector<size_t>* starts) const;
  void encodeWord(std::string_view word, size_t base, bool prefixed, std::vector<int32_t>& ids,
                  std::vector<size_t>* starts) const;
  void mergeWord(std::string_view word, MergeScratch& scratch) const;
};

/// Reads `file` (a tokenizer.json) and, when `config_file` is given and exists, the eos, pad
/// and bos tokens of a tokenizer_config.json. Throws InputError naming the file and the key.
std::shared_ptr<TokenizerImpl> loadTokenizer(const std::filesystem::path& file,
                                             const std::filesystem::path* config_file);

}  // namespace loom::detail

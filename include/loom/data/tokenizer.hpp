#pragma once
// A Hugging Face `tokenizer.json` tokenizer of the byte-level BPE family (Qwen2, Qwen3,
// Llama 3, GPT-2), giving the same ids as the `tokenizers` library (DESIGN invariant 2).
//
// What encode() does, in the library's order:
//   1. added tokens with `normalized: false` are matched in the raw text (leftmost,
//      longest first; `single_word`, `lstrip`, `rstrip` honoured);
//   2. each remaining piece is normalized (NFC, NFD, NFKC, NFKD, a Sequence of them, or
//      none), then added tokens with `normalized: true` are matched in it;
//   3. each remaining piece is split by the pre-tokenizers (`Split` regexes with behaviour
//      Isolated, then `ByteLevel`, optionally with its GPT-2 regex and prefix space);
//   4. each word is mapped to byte-level symbols and merged by BPE rank.
// encode() never adds the post-processor's special tokens (BOS/EOS or anything else):
// specialPrefix()/specialSuffix() say what it would add, and callers put them in themselves,
// so what a sample holds is explicit.
// Anything else in the file (WordPiece, Unigram, Metaspace, byte_fallback, dropout, ...)
// is refused with an InputError naming the file, the JSON key and the value.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom {

namespace detail {
struct TokenizerImpl;
}  // namespace detail

/// Immutable after loading; copies share the loaded tables. encode() and decode() are safe
/// to call from many threads at once (each thread keeps its own word cache).
class Tokenizer {
 public:
  /// Loads a tokenizer.json. Throws InputError (missing file, malformed JSON, unsupported
  /// component) naming the file and the JSON key. No tokenizer_config.json is read, so
  /// eosId()/padId()/bosId() are empty.
  static Tokenizer fromFile(const std::filesystem::path& tokenizer_json);

  /// Loads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json for the
  /// eos, pad and bos tokens.
  static Tokenizer fromDir(const std::filesystem::path& dir);

  /// Token ids of `text`, which must be valid UTF-8 (InputError otherwise, with the byte
  /// offset). No special tokens are added.
  std::vector<int32_t> encode(std::string_view text) const;

  /// Appends the ids of `text` to `ids`. When `starts` is given, appends for each token the
  /// byte offset in `text` where it begins. Offsets are exact where normalization leaves a
  /// piece unchanged (always for NFC text); inside a piece that normalization changes,
  /// tokens in the common prefix/suffix of the piece keep exact offsets and the rest are
  /// mapped to the end of that prefix.
  void encode(std::string_view text, std::vector<int32_t>& ids,
              std::vector<size_t>* starts = nullptr) const;

  /// Text of `ids` as the library's ByteLevel decoder gives it (invalid UTF-8 from partial
  /// byte sequences becomes U+FFFD). Unknown ids are skipped, as the library does.
  /// `skip_special` drops added tokens marked `special`.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  /// The id of a token by its vocabulary string (byte-level form, e.g. "Ġthe", or an added
  /// token's content); empty when absent.
  std::optional<int32_t> tokenToId(std::string_view token) const;

  /// The vocabulary string of `id` (byte-level form, or an added token's content); empty
  /// string when the id is unknown.
  std::string idToToken(int32_t id) const;

  /// True when `id` is an added token marked `special`.
  bool isSpecial(int32_t id) const;

  /// Largest id (model vocabulary or added token) + 1: the embedding rows a model needs.
  int32_t vocabSize() const;

  /// Ids of tokenizer_config.json's `eos_token`, `pad_token`, `bos_token` (empty when not
  /// set, when the config is absent, or when the token is not in the vocabulary).
  std::optional<int32_t> eosId() const;
  std::optional<int32_t> padId() const;
  std::optional<int32_t> bosId() const;

  /// Ids the post-processor puts before / after a single sequence (the library's
  /// encode(text, add_special_tokens=True) == prefix + encode(text) + suffix); empty when it
  /// adds none (ByteLevel, absent). Read from TemplateProcessing's `single` template, or
  /// Roberta/BertProcessing's `cls` and `sep`; each id is a token of the vocabulary.
  const std::vector<int32_t>& specialPrefix() const;
  const std::vector<int32_t>& specialSuffix() const;

  /// SHA-256 (hex) of the tokenizer.json bytes: recorded in prepared datasets so that data
  /// and tokenizer can be matched later. tokenizer_config.json is not part of it.
  const std::string& contentHash() const;
  /// contentHash() of `<dir>/tokenizer.json` without loading it; empty when there is none.
  static std::string fileHash(const std::filesystem::path& dir);

  /// The tokenizer.json this was loaded from.
  const std::filesystem::path& path() const;

 private:
  explicit Tokenizer(std::shared_ptr<const detail::TokenizerImpl> impl);
  std::shared_ptr<const detail::TokenizerImpl> impl_;
};

/// True when `text` is valid UTF-8; otherwise sets `*error_offset` (if given) to the byte
/// offset of the first invalid sequence.
bool isValidUtf8(std::string_view text, size_t* error_offset = nullptr);

/// `bytes` with each maximal invalid UTF-8 subsequence replaced by U+FFFD, as Rust's
/// String::from_utf8_lossy (and Python's errors="replace") do.
std::string toValidUtf8(std::string_view bytes);

}  // namespace loom

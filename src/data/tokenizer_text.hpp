#pragma once
// Internal helpers of the tokenizer (not a public header): UTF-8 decoding, Unicode
// normalization through utf8proc, and a PCRE2 regex that matches the way the
// `tokenizers` library's Oniguruma regexes do.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace loom::detail {

/// Decodes the code point at `text[pos]` (valid UTF-8 assumed) and advances `pos`.
inline uint32_t nextCodePoint(std::string_view text, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  int extra = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
  uint32_t cp = b0 & (0x3F >> extra);
  ++pos;
  for (int i = 0; i < extra; ++i) cp = (cp << 6) | (static_cast<unsigned char>(text[pos++]) & 0x3F);
  return cp;
}

/// Code point ending at byte `end` (exclusive) of valid UTF-8 `text`; `end` > 0.
uint32_t previousCodePoint(std::string_view text, size_t end);

/// Unicode White_Space, the set of `\s` in the library's regexes.
bool isUnicodeSpace(uint32_t cp);

/// Approximates Rust regex's Unicode `\w` (letters, marks, decimal digits, letter numbers,
/// connector punctuation, joiners): used only for `single_word` added tokens.
bool isWordChar(uint32_t cp);

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };

/// Normalizes `in` into `out` (valid UTF-8 assumed). Returns false, leaving `out` untouched,
/// when the text is already in that form by a quick check (so the caller can keep `in`).
bool normalizeUtf8(std::string_view in, NormalizationForm form, std::string& out);

/// A compiled PCRE2 regex (UTF + UCP, JIT) that behaves like the Oniguruma regex the
/// `tokenizers` library builds from the same pattern: `\s` is rewritten to Unicode White_Space
/// (PCRE2 also counts U+180E) and `\p{L}`, `\p{N}` are completed from utf8proc's tables where
/// PCRE2's Unicode version is older.
class OnigCompatibleRegex {
 public:
  /// Throws InputError naming `where` when the pattern does not compile.
  OnigCompatibleRegex(const std::string& pattern, const std::string& where);
  ~OnigCompatibleRegex();
  OnigCompatibleRegex(const OnigCompatibleRegex&) = delete;
  OnigCompatibleRegex& operator=(const OnigCompatibleRegex&) = delete;

  /// Finds the first match at or after `from` in `subject`; false when there is none.
  bool find(std::string_view subject, size_t from, size_t& match_begin, size_t& match_end) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace loom::detail

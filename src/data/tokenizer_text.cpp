// UTF-8, normalization, hashing and regex helpers of the tokenizer (see tokenizer_text.hpp).

#include "tokenizer_text.hpp"

#include <pcre2.h>  // PCRE2_CODE_UNIT_WIDTH=8 comes from the PCRE2 target
#include <utf8proc.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/data/tokenizer.hpp"

namespace loom {

namespace {

// Length of the valid UTF-8 sequence at `p` (1..4), or 0 with `*bad` set to the length of
// the maximal invalid subpart (Unicode "substitution of maximal subparts", as Rust does).
size_t utf8SequenceLength(const unsigned char* p, size_t avail, size_t* bad) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t i = 1; i < need; ++i) {
    if (i >= avail) {
      *bad = i;
      return 0;
    }
    const unsigned char b = p[i];
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *bad = i;
      return 0;
    }
  }
  return need;
}

}  // namespace

bool isValidUtf8(std::string_view text, size_t* error_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t len = utf8SequenceLength(p + i, n - i, &bad);
    if (len == 0) {
      if (error_offset) *error_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string toValidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    size_t bad = 0;
    const size_t len = utf8SequenceLength(p + i, n - i, &bad);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      i += bad;
    } else {
      out.append(bytes.data() + i, len);
      i += len;
    }
  }
  return out;
}

namespace detail {

uint32_t previousCodePoint(std::string_view text, size_t end) {
  size_t begin = end - 1;
  while (begin > 0 && (static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80) --begin;
  return nextCodePoint(text, begin);
}

bool isUnicodeSpace(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool isWordChar(uint32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  }
  if (cp == 0x200C || cp == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

bool normalizeUtf8(std::string_view in, NormalizationForm form, std::string& out) {
  // Quick checks: ASCII is invariant under every form. For NFC, no code point below U+0300
  // decomposes or takes part in a composition as its second element, and lead bytes below
  // 0xCC encode exactly those code points.
  const unsigned char limit = form == NormalizationForm::kNfc ? 0xCC : 0x80;
  bool trivial = true;
  for (char c : in) {
    if (static_cast<unsigned char>(c) >= limit) {
      trivial = false;
      break;
    }
  }
  if (trivial) return false;

  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalizationForm::kNfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalizationForm::kNfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalizationForm::kNfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalizationForm::kNfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  // utf8proc_map would malloc per call; decompose into a per-thread buffer instead.
  thread_local std::vector<utf8proc_int32_t> buffer(256);
  const auto* src = reinterpret_cast<const utf8proc_uint8_t*>(in.data());
  const auto len = static_cast<utf8proc_ssize_t>(in.size());
  const auto opts = static_cast<utf8proc_option_t>(options);
  utf8proc_ssize_t n = utf8proc_decompose(src, len, buffer.data(),
                                          static_cast<utf8proc_ssize_t>(buffer.size()), opts);
  if (n > static_cast<utf8proc_ssize_t>(buffer.size())) {
    buffer.resize(static_cast<size_t>(n) + 16);
    n = utf8proc_decompose(src, len, buffer.data(), static_cast<utf8proc_ssize_t>(buffer.size()),
                           opts);
  }
  LOOM_CHECK(n >= 0, "utf8proc_decompose failed: " << utf8proc_errmsg(n));
  // The re-encoded UTF-8 is written over the code point buffer itself.
  const utf8proc_ssize_t bytes = utf8proc_reencode(buffer.data(), n, opts);
  LOOM_CHECK(bytes >= 0, "utf8proc_reencode failed: " << utf8proc_errmsg(bytes));
  const auto* encoded = reinterpret_cast<const char*>(buffer.data());
  if (static_cast<size_t>(bytes) == in.size() && std::memcmp(encoded, in.data(), in.size()) == 0) {
    return false;
  }
  out.assign(encoded, static_cast<size_t>(bytes));
  return true;
}

// ---------------------------------------------------------------------------------------
// Regex.

namespace {

// Unicode White_Space as a class body: Oniguruma's `\s`. PCRE2's UCP `\s` adds U+180E.
constexpr const char* kSpaceClass =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// Code points that utf8proc puts in general category L (or N) but this PCRE2 build's
// `\p{L}` (`\p{N}`) does not match, as a class body. The library's Oniguruma follows a newer
// Unicode than some PCRE2 releases (Debian 12's 10.42 has Unicode 14; Oniguruma and
// utf8proc 2.8 have 15, which added e.g. the Kaktovik numerals U+1D2C0..U+1D2D3).
struct CategoryPatches {
  std::string letters;
  std::string numbers;
};

const CategoryPatches& categoryPatches() {
  static const CategoryPatches patches = [] {
    CategoryPatches out;
    auto missing = [](const char* property, bool (*in_category)(utf8proc_category_t)) {
      int error = 0;
      PCRE2_SIZE offset = 0;
      pcre2_code* code =
          pcre2_compile(reinterpret_cast<PCRE2_SPTR>(property), PCRE2_ZERO_TERMINATED,
                        PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &error, &offset, nullptr);
      LOOM_CHECK(code, "cannot compile " << property);
      pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
      pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
      std::string body;
      int64_t run_start = -1;
      auto close_run = [&](int64_t end) {
        if (run_start < 0) return;
        char buf[48];
        std::snprintf(buf, sizeof(buf), "\\x{%llX}-\\x{%llX}", static_cast<long long>(run_start),
                      static_cast<long long>(end));
        body += buf;
        run_start = -1;
      };
      for (int32_t cp = 0; cp < 0x110000; ++cp) {
        bool miss = false;
        if ((cp < 0xD800 || cp > 0xDFFF) && in_category(utf8proc_category(cp))) {
          unsigned char utf8[4];
          const auto len = utf8proc_encode_char(cp, utf8);
          miss = pcre2_match(code, utf8, static_cast<PCRE2_SIZE>(len), 0, 0, data, nullptr) < 0;
        }
        if (miss && run_start < 0) run_start = cp;
        if (!miss) close_run(cp - 1);
      }
      close_run(0x10FFFF);
      pcre2_match_data_free(data);
      pcre2_code_free(code);
      return body;
    };
    out.letters = missing("\\p{L}", [](utf8proc_category_t c) {
      return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
             c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
    });
    out.numbers = missing("\\p{N}", [](utf8proc_category_t c) {
      return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
    });
    return out;
  }();
  return patches;
}

// Rewrites the pattern so that PCRE2 classifies characters as Oniguruma does: `\s`/`\S`
// become explicit White_Space classes, `\p{L}`/`\p{N}` gain the code points PCRE2's older
// tables lack.
std::string rewriteClasses(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      const std::string_view rest = std::string_view(pattern).substr(i);
      const bool letter = rest.substr(0, 5) == "\\p{L}";
      const bool number = rest.substr(0, 5) == "\\p{N}";
      if (letter || number) {
        const std::string& extra = letter ? categoryPatches().letters : categoryPatches().numbers;
        const std::string body = std::string(rest.substr(0, 5)) + extra;
        out += in_class || extra.empty() ? body : "[" + body + "]";
        i += 4;
        continue;
      }
      if (e == 's') {
        out += in_class ? std::string(kSpaceClass) : "[" + std::string(kSpaceClass) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kSpaceClass) + "]";
      } else {
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

// Per-thread PCRE2 match data and JIT stack, shared by every regex the thread runs.
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(8, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (context && jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
  }
};

}  // namespace

OnigCompatibleRegex::OnigCompatibleRegex(const std::string& pattern, const std::string& where) {
  const std::string rewritten = rewriteClasses(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    LOOM_INPUT_CHECK(false, where << ": regex " << pattern << " does not compile: "
                                  << reinterpret_cast<const char*>(message));
  }
  // JIT is a speed-up only: without it pcre2_match interprets the same pattern.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

OnigCompatibleRegex::~OnigCompatibleRegex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool OnigCompatibleRegex::find(std::string_view subject, size_t from, size_t& match_begin,
                               size_t& match_end) const {
  thread_local MatchScratch scratch;
  const int rc = pcre2_match(static_cast<const pcre2_code*>(code_),
                             reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), from,
                             PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof(message));
    LOOM_CHECK(false, "pre-tokenizer regex failed on a " << subject.size() << "-byte piece: "
                                                         << reinterpret_cast<const char*>(message));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
  match_begin = ovector[0];
  match_end = ovector[1];
  return true;
}

}  // namespace detail
}  // namespace loom

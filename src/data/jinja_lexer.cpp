// The Jinja lexer: splits a template into text and the tokens of {{ }} and {% %}, with
// Jinja2's whitespace rules for trim_blocks=True and lstrip_blocks=True:
//   - newlines are normalized to "\n" and one trailing newline of the template is dropped;
//   - "{%-", "{{-", "{#-" strip all whitespace before the tag; "-%}", "-}}", "-#}" all after;
//   - trim_blocks: a block or comment end ("%}", "#}") eats the one newline right after it,
//     unless written "+%}";
//   - lstrip_blocks: spaces and tabs between a line start and a block or comment start are
//     dropped, unless written "{%+"; variables ({{) are never lstripped.

#include <algorithm>
#include <cctype>
#include <charconv>

#include "jinja_ast.hpp"
#include "loom/core/error.hpp"

namespace loom::detail::jinja {

namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string rstripSpace(const std::string& s) {
  size_t end = s.size();
  while (end > 0 && isSpace(s[end - 1])) --end;
  return s.substr(0, end);
}

class Lexer {
 public:
  Lexer(const std::string& source, const std::string& where) : where_(where) {
    // Newlines normalized to "\n"; Jinja2 drops one trailing newline (keep_trailing_newline=False).
    for (size_t k = 0; k < source.size(); ++k) {
      if (source[k] == '\r') {
        src_ += '\n';
        if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
      } else {
        src_ += source[k];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t k = 0; k < src_.size(); ++k) {
      if (src_[k] == '\n') line_starts_.push_back(k + 1);
    }
  }

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      const size_t tag = findTagStart(pos_);
      if (tag == std::string::npos) {
        emitText(src_.substr(pos_), pos_);
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      const bool has_sign = sign == '-' || sign == '+';
      size_t raw_end = 0;
      const bool raw = kind == '%' && matchRawBegin(tag, raw_end);
      std::string text = src_.substr(pos_, tag - pos_);
      if (sign == '-') {
        text = rstripSpace(text);
      } else if (sign != '+' && kind != '{') {
        text = lstripLine(text, line_starting);
      }
      emitText(text, pos_);
      if (raw) {
        line_starting = lexRaw(raw_end);
        continue;
      }
      pos_ = tag + 2 + (has_sign ? 1 : 0);
      if (kind == '#') {
        line_starting = lexComment(tag);
      } else {
        line_starting = lexTag(kind == '%', tag);
      }
    }
    tokens_.push_back(Token{Token::Kind::End, {}, 0, 0.0, lineOf(src_.size()), 1});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(size_t at, const std::string& message) const {
    LOOM_INPUT_CHECK(false, where_ << ":" << lineOf(at) << ":" << colOf(at) << ": " << message);
    throw;  // unreachable
  }

  int lineOf(size_t at) const {
    return static_cast<int>(std::upper_bound(line_starts_.begin(), line_starts_.end(), at) -
                            line_starts_.begin());
  }
  int colOf(size_t at) const { return static_cast<int>(at - line_starts_[lineOf(at) - 1]) + 1; }

  Token make(Token::Kind kind, size_t at, std::string text = {}) const {
    return Token{kind, std::move(text), 0, 0.0, lineOf(at), colOf(at)};
  }

  void emitText(const std::string& text, size_t at) {
    if (!text.empty()) tokens_.push_back(make(Token::Kind::Text, at, text));
  }

  size_t findTagStart(size_t from) const {
    for (size_t k = from; k + 1 < src_.size(); ++k) {
      if (src_[k] == '{' && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) {
        return k;
      }
    }
    return std::string::npos;
  }

  // lstrip_blocks: drop the spaces between the last line start and the tag.
  static std::string lstripLine(const std::string& text, bool line_starting) {
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting) return text;
    for (size_t k = l_pos; k < text.size(); ++k) {
      if (!isSpace(text[k])) return text;
    }
    return text.substr(0, l_pos);
  }

  size_t skipSpace(size_t at) const {
    while (at < src_.size() && isSpace(src_[at])) ++at;
    return at;
  }

  bool matchWord(size_t at, const char* word) const {
    const std::string w(word);
    if (src_.compare(at, w.size(), w) != 0) return false;
    const size_t after = at + w.size();
    return after >= src_.size() ||
           !(std::isalnum(static_cast<unsigned char>(src_[after])) || src_[after] == '_');
  }

  // "{%(-|+|)\s*raw\s*(-%}\s*|%})": note that "%}" here does not eat a newline.
  bool matchRawBegin(size_t tag, size_t& end) const {
    size_t at = tag + 2;
    if (at < src_.size() && (src_[at] == '-' || src_[at] == '+')) ++at;
    at = skipSpace(at);
    if (!matchWord(at, "raw")) return false;
    at = skipSpace(at + 3);
    if (src_.compare(at, 3, "-%}") == 0) {
      end = skipSpace(at + 3);
      return true;
    }
    if (src_.compare(at, 2, "%}") == 0) {
      end = at + 2;
      return true;
    }
    return false;
  }

  // The body of {% raw %} up to {% endraw %}, emitted as text. Returns line_starting.
  bool lexRaw(size_t body_start) {
    bool line_starting = body_start > 0 && src_[body_start - 1] == '\n';
    for (size_t k = body_start; (k = src_.find("{%", k)) != std::string::npos; ++k) {
      size_t at = k + 2;
      const char sign = at < src_.size() ? src_[at] : '\0';
      if (sign == '-' || sign == '+') ++at;
      at = skipSpace(at);
      if (!matchWord(at, "endraw")) continue;
      at = skipSpace(at + 6);
      size_t end;
      if (src_.compare(at, 3, "+%}") == 0) {
        end = at + 3;
      } else if (src_.compare(at, 3, "-%}") == 0) {
        end = skipSpace(at + 3);
      } else if (src_.compare(at, 2, "%}") == 0) {
        end = at + 2 + (at + 2 < src_.size() && src_[at + 2] == '\n' ? 1 : 0);
      } else {
        continue;
      }
      std::string text = src_.substr(body_start, k - body_start);
      if (sign == '-') {
        text = rstripSpace(text);
      } else if (sign != '+') {
        text = lstripLine(text, line_starting);
      }
      emitText(text, body_start);
      pos_ = end;
      return src_[end - 1] == '\n';
    }
    fail(body_start, "missing end of raw directive ({% endraw %})");
  }

  // Comment body up to "#}"; returns line_starting.
  bool lexComment(size_t tag) {
    const size_t close = src_.find("#}", pos_);
    if (close == std::string::npos) fail(tag, "missing end of comment tag (#})");
    size_t end = close + 2;
    if (close > pos_ && src_[close - 1] == '-') {
      end = skipSpace(end);
    } else if (!(close > pos_ && src_[close - 1] == '+') && end < src_.size() &&
               src_[end] == '\n') {
      ++end;  // trim_blocks
    }
    pos_ = end;
    return src_[end - 1] == '\n';
  }

  // Tokens of a {% %} or {{ }} tag after its opening; returns line_starting.
  bool lexTag(bool block, size_t tag) {
    tokens_.push_back(make(block ? Token::Kind::BlockBegin : Token::Kind::VarBegin, tag));
    std::vector<char> brackets;
    const std::string close = block ? "%}" : "}}";
    while (true) {
      if (pos_ >= src_.size()) {
        fail(tag, block ? "missing end of block tag (%})" : "missing end of variable tag (}})");
      }
      if (brackets.empty()) {
        size_t end = 0;
        if (block && src_.compare(pos_, 3, "+%}") == 0) {
          end = pos_ + 3;
        } else if (src_.compare(pos_, 3, "-" + close) == 0) {
          end = skipSpace(pos_ + 3);
        } else if (src_.compare(pos_, 2, close) == 0) {
          end = pos_ + 2;
          if (block && end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
        }
        if (end != 0) {
          tokens_.push_back(make(block ? Token::Kind::BlockEnd : Token::Kind::VarEnd, pos_));
          pos_ = end;
          return src_[end - 1] == '\n';
        }
      }
      const char c = src_[pos_];
      if (isSpace(c)) {
        ++pos_;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lexNumber();
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        const size_t start = pos_;
        while (pos_ < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) {
          ++pos_;
        }
        tokens_.push_back(make(Token::Kind::Name, start, src_.substr(start, pos_ - start)));
      } else if (c == '\'' || c == '"') {
        lexString();
      } else {
        lexOperator(brackets);
      }
    }
  }

  void lexNumber() {
    const size_t start = pos_;
    std::string digits;
    bool is_float = false;
    const auto take_digits = [&] {
      while (pos_ < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) {
        if (src_[pos_] != '_') digits += src_[pos_];
        ++pos_;
      }
    };
    take_digits();
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      digits += src_[pos_++];
      take_digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t at = pos_ + 1;
      if (at < src_.size() && (src_[at] == '+' || src_[at] == '-')) ++at;
      if (at < src_.size() && std::isdigit(static_cast<unsigned char>(src_[at]))) {
        is_float = true;
        digits += 'e';
        digits.append(src_, pos_ + 1, at - pos_ - 1);
        pos_ = at;
        take_digits();
      }
    }
    Token token = make(is_float ? Token::Kind::Float : Token::Kind::Int, start, digits);
    if (is_float) {
      token.fval = std::stod(digits);
    } else {
      const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), token.ival);
      if (res.ec != std::errc()) fail(start, "integer literal " + digits + " is out of range");
    }
    tokens_.push_back(std::move(token));
  }

  // A quoted string with Python escapes (Jinja decodes them with "unicode-escape").
  void lexString() {
    const size_t start = pos_;
    const char quote = src_[pos_++];
    std::u32string out;
    const auto hex = [&](int n) {
      if (pos_ + n > src_.size()) fail(start, "truncated escape in string literal");
      uint32_t v = 0;
      for (int k = 0; k < n; ++k) {
        const char h = src_[pos_++];
        if (!std::isxdigit(static_cast<unsigned char>(h))) {
          fail(start, "bad escape in string literal");
        }
        v = v * 16 +
            (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      return v;
    };
    while (true) {
      if (pos_ >= src_.size()) fail(start, "unterminated string literal");
      const char c = src_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        const size_t from = pos_;
        while (pos_ < src_.size() && src_[pos_] != quote && src_[pos_] != '\\') ++pos_;
        out += utf8Decode(src_.substr(from, pos_ - from));
        continue;
      }
      if (pos_ + 1 >= src_.size()) fail(start, "unterminated string literal");
      const char e = src_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case 'n':
          out += U'\n';
          break;
        case 't':
          out += U'\t';
          break;
        case 'r':
          out += U'\r';
          break;
        case '\\':
          out += U'\\';
          break;
        case '\'':
          out += U'\'';
          break;
        case '"':
          out += U'"';
          break;
        case 'a':
          out += U'\a';
          break;
        case 'b':
          out += U'\b';
          break;
        case 'f':
          out += U'\f';
          break;
        case 'v':
          out += U'\v';
          break;
        case '0':
          out += U'\0';
          break;
        case '\n':
          break;
        case 'x':
          out += hex(2);
          break;
        case 'u':
          out += hex(4);
          break;
        case 'U':
          out += hex(8);
          break;
        default:
          out += U'\\';
          out += static_cast<char32_t>(static_cast<unsigned char>(e));
      }
    }
    tokens_.push_back(make(Token::Kind::String, start, utf8Encode(out)));
  }

  void lexOperator(std::vector<char>& brackets) {
    static const char* const kLong[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const char* op : kLong) {
      if (src_.compare(pos_, 2, op) == 0) {
        tokens_.push_back(make(Token::Kind::Op, pos_, op));
        pos_ += 2;
        return;
      }
    }
    const char c = src_[pos_];
    if (std::string("+-*/%~<>=.,:|()[]{}").find(c) == std::string::npos) {
      fail(pos_, std::string("unexpected character '") + c + "'");
    }
    if (c == '(' || c == '[' || c == '{') {
      brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) fail(pos_, std::string("unexpected '") + c + "'");
      if (brackets.back() != c) {
        fail(pos_, std::string("unexpected '") + c + "', expected '" + brackets.back() + "'");
      }
      brackets.pop_back();
    }
    tokens_.push_back(make(Token::Kind::Op, pos_, std::string(1, c)));
    ++pos_;
  }

  const std::string& where_;
  std::string src_;
  std::vector<size_t> line_starts_;  // byte offset of each line's first character
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(const std::string& source, const std::string& where) {
  return Lexer(source, where).run();
}

}  // namespace loom::detail::jinja

#include "loom/core/text_encoding.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/strings.hpp"

namespace loom {
namespace {

/// Length of the valid UTF-8 sequence at text[i], or 0 when it is not one.
size_t utf8SequenceLength(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  size_t n = 0;
  uint32_t code = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    code = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    code = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    code = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < smallest[n] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

size_t utf8BomLength(std::string_view head) { return startsWith(head, "\xEF\xBB\xBF") ? 3 : 0; }

std::string wideEncodingOf(std::string_view head) {
  using namespace std::string_view_literals;
  // UTF-32 first: its little-endian mark starts with UTF-16's.
  if (startsWith(head, "\xFF\xFE\0\0"sv)) return "UTF-32 (little-endian)";
  if (startsWith(head, "\0\0\xFE\xFF"sv)) return "UTF-32 (big-endian)";
  if (startsWith(head, "\xFF\xFE"sv)) return "UTF-16 (little-endian)";
  if (startsWith(head, "\xFE\xFF"sv)) return "UTF-16 (big-endian)";
  // Without a mark: ASCII text in UTF-16 has a zero byte beside each character, which text
  // in UTF-8 never has.
  if (head.size() >= 4) {
    if (head[0] != '\0' && head[1] == '\0' && head[2] == '\0' && head[3] == '\0') {
      return "UTF-32 (little-endian)";
    }
    if (head[0] == '\0' && head[1] == '\0' && head[2] == '\0' && head[3] != '\0') {
      return "UTF-32 (big-endian)";
    }
    if (head[0] != '\0' && head[1] == '\0' && head[2] != '\0' && head[3] == '\0') {
      return "UTF-16 (little-endian)";
    }
    if (head[0] == '\0' && head[1] != '\0' && head[2] == '\0' && head[3] != '\0') {
      return "UTF-16 (big-endian)";
    }
  }
  return "";
}

void requireUtf8(std::string_view head, const std::filesystem::path& file) {
  const std::string encoding = wideEncodingOf(head);
  LOOM_INPUT_CHECK(encoding.empty(),
                   file.string() << ": the file is encoded as " << encoding
                                 << "; Loom reads UTF-8 text. Convert it, e.g. `iconv -f "
                                 << encoding.substr(0, 6)
                                 << (encoding.find("little") != std::string::npos ? "LE" : "BE")
                                 << " -t UTF-8 " << file.string() << " > converted"
                                 << file.extension().string() << "`");
}

void skipUtf8Bom(std::istream& in, const std::filesystem::path& file) {
  char head[8] = {};
  in.read(head, sizeof head);
  const std::string_view seen(head, static_cast<size_t>(in.gcount()));
  requireUtf8(seen, file);
  in.clear();
  in.seekg(static_cast<std::streamoff>(utf8BomLength(seen)));
}

std::string readUtf8TextFile(const std::filesystem::path& path, const std::string& what) {
  std::string text = readFileOrThrow(path, what);
  requireUtf8(std::string_view(text).substr(0, 8), path);
  text.erase(0, utf8BomLength(text));
  // A parser handed other bytes reports something far from the cause (yaml-cpp even guesses
  // an encoding from a leading NUL): say what is wrong and where.
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8SequenceLength(text, i);
    LOOM_INPUT_CHECK(n != 0 && text[i] != '\0',
                     path.string() << ":" << line << ":" << (i - line_start + 1) << ": "
                                   << (n == 0 ? "not valid UTF-8" : "a NUL byte") << " (byte " << i
                                   << " of the file); expected UTF-8 text, "
                                   << "is this a binary file?");
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
    i += n;
  }
  return text;
}

std::string printableText(std::string_view text, size_t max_bytes) {
  std::string out;
  const size_t end = std::min(text.size(), max_bytes);
  size_t i = 0;
  while (i < end) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t n = utf8SequenceLength(text, i);
    if (n == 0 || c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  if (end < text.size()) out += "...";
  return out;
}

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace loom

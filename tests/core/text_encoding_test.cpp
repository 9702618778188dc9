// core/text_encoding: the UTF-8 byte-order mark, UTF-16/32 detection, and printable messages.

#include "loom/core/text_encoding.hpp"

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using namespace std::string_literals;

TEST(TextEncoding, Utf8ByteOrderMark) {
  EXPECT_EQ(utf8BomLength("\xEF\xBB\xBF{}"), 3u);
  EXPECT_EQ(utf8BomLength("{}"), 0u);
  EXPECT_EQ(utf8BomLength("\xEF\xBB"), 0u);
}

TEST(TextEncoding, WideEncodingsByMarkAndByZeroBytes) {
  EXPECT_EQ(wideEncodingOf("\xFF\xFE{\0"s), "UTF-16 (little-endian)");
  EXPECT_EQ(wideEncodingOf("\xFE\xFF\0{"s), "UTF-16 (big-endian)");
  EXPECT_EQ(wideEncodingOf("\xFF\xFE\0\0{\0\0\0"s), "UTF-32 (little-endian)");
  EXPECT_EQ(wideEncodingOf("\0\0\xFE\xFF"s), "UTF-32 (big-endian)");
  EXPECT_EQ(wideEncodingOf("{\0\"\0"s), "UTF-16 (little-endian)");
  EXPECT_EQ(wideEncodingOf("\0{\0\""s), "UTF-16 (big-endian)");
  EXPECT_EQ(wideEncodingOf("{\0\0\0"s), "UTF-32 (little-endian)");
  EXPECT_EQ(wideEncodingOf("{\"a\""), "");
  EXPECT_EQ(wideEncodingOf("\xEF\xBB\xBF{\"a\""), "");
  EXPECT_EQ(wideEncodingOf("h\xC3\xA9llo"), "");
  EXPECT_EQ(wideEncodingOf(""), "");
}

TEST(TextEncoding, ReadUtf8TextFileSkipsTheMarkAndRefusesUtf16) {
  testing::TempDir dir;
  const auto marked = dir.write("a.json", "\xEF\xBB\xBF{\"k\": 1}");
  EXPECT_EQ(readUtf8TextFile(marked, "test file"), "{\"k\": 1}");
  const auto wide = dir.write("b.json", "\xFF\xFE{\0}\0"s);
  try {
    readUtf8TextFile(wide, "test file");
    FAIL() << "UTF-16 accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(wide.string() + ": the file is encoded as UTF-16 (little-endian)"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("iconv -f UTF-16LE -t UTF-8"), std::string::npos) << what;
  }
}

TEST(TextEncoding, ReadUtf8TextFileRefusesBinaryAndInvalidBytesWithThePlace) {
  testing::TempDir dir;
  for (const auto& [name, bytes, expected] :
       {std::tuple{"nul.yaml", "\0\x01\x02\xFF\xFE garbage"s, ":1:1: a NUL byte (byte 0"},
        std::tuple{"bad.yaml", "model:\n  path: caf\xE9\n"s, ":2:12: not valid UTF-8 (byte 18"}}) {
    const auto file = dir.write(name, bytes);
    try {
      readUtf8TextFile(file, "config file");
      FAIL() << name << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(file.string() + expected), std::string::npos)
          << e.what();
    }
  }
}

TEST(TextEncoding, PrintableTextEscapesControlAndInvalidBytes) {
  EXPECT_EQ(printableText("caf\xC3\xA9 ok"), "caf\xC3\xA9 ok");
  EXPECT_EQ(printableText("a\xFF"
                          "b"),
            "a\\xFFb");
  EXPECT_EQ(printableText("line\nnext\x1B[31m"), "line\\x0Anext\\x1B[31m");
  EXPECT_EQ(printableText("\xED\xA0\x80"), "\\xED\\xA0\\x80");  // a surrogate is not UTF-8
  EXPECT_EQ(printableText(std::string(300, 'x'), 10), std::string(10, 'x') + "...");
}

}  // namespace
}  // namespace loom

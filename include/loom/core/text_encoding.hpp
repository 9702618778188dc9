#pragma once
// The one place that decides how a user's text file is encoded. Loom reads UTF-8 only: a
// UTF-8 byte-order mark is skipped (every reader the same way), and a UTF-16 or UTF-32 file
// (Windows editors and PowerShell redirects make them) is refused by name, with the command
// that converts it, instead of failing later as "malformed JSON at column 1".

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <istream>
#include <string>
#include <string_view>

namespace loom {

/// 3 when `head` starts with the UTF-8 byte-order mark (EF BB BF), else 0.
size_t utf8BomLength(std::string_view head);

/// Appends code point `cp` (<= 0x10FFFF) to `out` as UTF-8.
void appendUtf8(std::string& out, uint32_t cp);

/// The name of a non-UTF-8 Unicode encoding that `head` (the file's first bytes) shows, by
/// its byte-order mark or, without one, by the zero bytes of ASCII text in UTF-16/32
/// ("UTF-16 (little-endian)", ...); empty for UTF-8 (or anything else).
std::string wideEncodingOf(std::string_view head);

/// Throws InputError naming `file` and the encoding when wideEncodingOf(head) is not empty.
void requireUtf8(std::string_view head, const std::filesystem::path& file);

/// For a stream at the start of `file`: requireUtf8 on its first bytes, then leaves the
/// stream after a UTF-8 byte-order mark (or at the start when there is none).
void skipUtf8Bom(std::istream& in, const std::filesystem::path& file);

/// The file's contents as UTF-8 text: readFileOrThrow, then requireUtf8, then the UTF-8
/// byte-order mark removed; bytes that are not UTF-8, or a NUL, are refused naming the file,
/// line and column. For files that are parsed (JSON, YAML); hashes read the bytes.
std::string readUtf8TextFile(const std::filesystem::path& path, const std::string& what);

/// `text` safe to print inside a message: valid UTF-8 is kept, control characters and bytes
/// that are not valid UTF-8 become \xNN, and at most `max_bytes` of input are shown
/// (then "...").
std::string printableText(std::string_view text, size_t max_bytes = 200);

}  // namespace loom

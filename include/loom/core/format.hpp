#pragma once
// Small text formatting shared by progress lines (prepare's progress bar, the trainer's ETA).

#include <string>

namespace loom {

/// "1:02:03" or "4:05"; "--:--" for a negative or non-finite duration (unknown ETA).
std::string formatDuration(double seconds);

/// A count for people: "950", "12.3k", "4.56M", "1.20G".
std::string formatCount(double value);

}  // namespace loom

namespace loom {

/// `text` with &, <, >, " and ' replaced by their entities (for HTML and SVG). `quote` is the
/// entity for " (markupsafe, and so jinja's `escape`, writes "&#34;").
std::string escapeXml(const std::string& text, const char* quote = "&quot;");

}  // namespace loom

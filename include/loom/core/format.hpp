#pragma once
// Small text formatting shared by progress lines (prepare's progress bar, the trainer's ETA).

#include <string>

namespace loom {

/// "1:02:03" or "4:05"; "--:--" for a negative or non-finite duration (unknown ETA).
std::string formatDuration(double seconds);

}  // namespace loom

namespace loom {

/// `text` with &, <, >, " and ' replaced by their entities (for HTML and SVG).
std::string escapeXml(const std::string& text);

}  // namespace loom

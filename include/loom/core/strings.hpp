#pragma once
// Prefix and suffix tests of strings (C++20's starts_with/ends_with, which C++17 lacks).

#include <string_view>

namespace loom {

/// True when `s` begins with `prefix` (always for an empty prefix).
bool startsWith(std::string_view s, std::string_view prefix);

/// True when `s` ends with `suffix` (always for an empty suffix).
bool endsWith(std::string_view s, std::string_view suffix);

}  // namespace loom

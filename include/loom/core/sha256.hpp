#pragma once
// SHA-256 (FIPS 180-4), for content hashes that other tools can recompute (sha256sum,
// hashlib): the tokenizer.json hash that ties a token file to its tokenizer.

#include <string>
#include <string_view>

namespace loom {

/// Lower-case hex SHA-256 of `data` (64 characters), as `sha256sum` prints it.
std::string sha256Hex(std::string_view data);

}  // namespace loom

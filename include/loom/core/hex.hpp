#pragma once
// Lower-case hexadecimal text of bytes and of 64-bit values: how digests and hashes are
// written into run directories, token files and messages.

#include <cstddef>
#include <cstdint>
#include <string>

namespace loom {

/// Two lower-case hex digits per byte, in order.
std::string toHex(const uint8_t* data, size_t size);

/// `value` as 16 lower-case hex digits, most significant first ("%016llx").
std::string hex64(uint64_t value);

}  // namespace loom

#include "loom/core/hex.hpp"

namespace loom {

namespace {
constexpr char kDigits[] = "0123456789abcdef";
}  // namespace

std::string toHex(const uint8_t* data, size_t size) {
  std::string out(2 * size, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xF];
  }
  return out;
}

std::string hex64(uint64_t value) {
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) out[static_cast<size_t>(i)] = kDigits[value & 0xF];
  return out;
}

}  // namespace loom

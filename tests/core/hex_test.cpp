// core/hex: byte and 64-bit hex text.

#include "loom/core/hex.hpp"

#include <gtest/gtest.h>

namespace loom {
namespace {

TEST(Hex, BytesInOrderLowerCase) {
  const uint8_t bytes[] = {0x00, 0x0f, 0xa0, 0xff, 0x5c};
  EXPECT_EQ(toHex(bytes, sizeof bytes), "000fa0ff5c");
  EXPECT_EQ(toHex(bytes, 0), "");
}

TEST(Hex, SixtyFourBitsPaddedToSixteenDigits) {
  EXPECT_EQ(hex64(0), "0000000000000000");
  EXPECT_EQ(hex64(0xABCULL), "0000000000000abc");
  EXPECT_EQ(hex64(0xFEDCBA9876543210ULL), "fedcba9876543210");
}

}  // namespace
}  // namespace loom

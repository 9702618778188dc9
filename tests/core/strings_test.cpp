// core/strings: prefix and suffix tests.

#include "loom/core/strings.hpp"

#include <gtest/gtest.h>

#include <string>

namespace loom {
namespace {

using namespace std::string_literals;

TEST(Strings, StartsWith) {
  EXPECT_TRUE(startsWith("cuda:0", "cuda:"));
  EXPECT_TRUE(startsWith("abc", ""));
  EXPECT_TRUE(startsWith("abc", "abc"));
  EXPECT_FALSE(startsWith("ab", "abc"));
  EXPECT_FALSE(startsWith("xabc", "abc"));
  EXPECT_TRUE(startsWith("\0\0\xFE\xFF"s, "\0\0"s));  // NUL bytes are ordinary bytes
}

TEST(Strings, EndsWith) {
  EXPECT_TRUE(endsWith("model.layers.0.bias", ".bias"));
  EXPECT_TRUE(endsWith("abc", ""));
  EXPECT_TRUE(endsWith("abc", "abc"));
  EXPECT_FALSE(endsWith("bc", "abc"));
  EXPECT_FALSE(endsWith("abcx", "abc"));
}

}  // namespace
}  // namespace loom

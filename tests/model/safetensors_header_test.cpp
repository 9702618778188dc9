// safetensors header parsing without libtorch (safetensors_header.hpp): what the reader
// builds its tensors from. Corrupt-file errors through SafetensorsFile: safetensors_test.cpp.

#include "loom/model/safetensors_header.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "loom/core/error.hpp"

namespace loom {
namespace {

/// A whole file: the 8-byte length, `header` verbatim, then `data_bytes` zeros.
std::string file(const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  return bytes + header + std::string(data_bytes, '\0');
}

std::string errorOf(const std::string& bytes) {
  try {
    parseSafetensorsHeader(bytes, "x.safetensors");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

TEST(SafetensorsHeader, ParsesEntriesAndMetadata) {
  const std::string bytes = file(
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})",
      28);
  const auto h = parseSafetensorsHeader(bytes, "x.safetensors");
  EXPECT_EQ(h.metadata.at("format"), "pt");
  ASSERT_EQ(h.entries.size(), 2u);
  const auto& a = h.entries.at("a");
  EXPECT_EQ(a.dtype, "F32");
  EXPECT_EQ(a.element_size, 4u);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h.entries.at("b").begin, 24u);
  EXPECT_EQ(h.data_size, 28u);
  EXPECT_EQ(h.dataOffset() + h.data_size, bytes.size());
}

// Found by reading the code (the fuzz target's check of non-negative dimensions fails on it):
// beside a 0, a dimension above 2^63 - 1 passed the overflow check and became a negative
// tensor size.
TEST(SafetensorsHeader, RefusesADimensionAboveInt64) {
  const std::string what = errorOf(
      file(R"({"w":{"dtype":"F32","shape":[0,9223372036854775808],"data_offsets":[0,0]}})", 0));
  EXPECT_NE(what.find("x.safetensors, tensor 'w': shape [0,9223372036854775808] overflows"),
            std::string::npos)
      << what;
  EXPECT_EQ(
      parseSafetensorsHeader(
          file(R"({"w":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}})", 0),
          "x.safetensors")
          .entries.at("w")
          .shape[1],
      INT64_MAX);
}

}  // namespace
}  // namespace loom

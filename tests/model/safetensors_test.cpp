// safetensors reader/writer: round trips, sharding, and every corrupt-file error.

#include "loom/model/safetensors.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>

#include "model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::expectInputError;
using testing::TempDir;

/// Writes a safetensors file by hand: `header` verbatim (no padding), then `data_bytes` zeros.
std::filesystem::path writeRaw(const TempDir& dir, const std::string& name,
                               const std::string& header, size_t data_bytes,
                               int64_t header_len_override = -1) {
  std::string bytes(8, '\0');
  const uint64_t n =
      header_len_override >= 0 ? static_cast<uint64_t>(header_len_override) : header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header;
  bytes.append(data_bytes, '\0');
  return dir.write(name, bytes);
}

TEST(Safetensors, RoundTripsEveryDtype) {
  TempDir dir;
  torch::manual_seed(0);
  NamedTensors tensors{
      {"f32", torch::randn({3, 5})},
      {"bf16", torch::randn({7}).to(torch::kBFloat16)},
      {"f16", torch::randn({2, 2, 3}).to(torch::kHalf)},
      {"i64", torch::arange(6, torch::kLong).reshape({2, 3})},
      {"i32", torch::arange(5, torch::kInt)},
      {"u8", torch::arange(3, torch::kByte)},
      {"bool", torch::tensor({true, false, true})},
      {"empty", torch::zeros({0, 4})},
      {"strided", torch::randn({4, 6}).t()},  // non-contiguous input
  };
  const auto path = dir.path() / "x.safetensors";
  saveSafetensors(path, tensors, {{"note", "hi"}});

  const std::string raw = testing::readFile(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "header must be padded to a multiple of 8";

  SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "hi");
  EXPECT_EQ(f.names().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    auto back = f.tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(back, t.contiguous())) << name;
  }
}

TEST(Safetensors, ShardsWithIndexAndCleansUpOnRewrite) {
  TempDir dir;
  NamedTensors tensors;
  for (int i = 0; i < 5; ++i)
    tensors.emplace_back("t" + std::to_string(i), torch::full({256}, static_cast<float>(i)));
  // 1 KiB per tensor, 2.5 KiB per shard: shards of 2, 2, 1 tensors.
  auto written = saveSafetensorsSharded(dir.path(), tensors, 2560);
  ASSERT_EQ(written.size(), 4u);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "model-00003-of-00003.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "model.safetensors.index.json"));
  auto ckpt = SafetensorsCheckpoint::open(dir.path());
  ASSERT_EQ(ckpt.names().size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(torch::equal(ckpt.tensor("t" + std::to_string(i)),
                             torch::full({256}, static_cast<float>(i))));
  }
  EXPECT_EQ(ckpt.fileOf("t4").path().filename(), "model-00003-of-00003.safetensors");

  saveSafetensorsSharded(dir.path(), tensors, 1ull << 30);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "model.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "model-00001-of-00003.safetensors"));
  EXPECT_EQ(SafetensorsCheckpoint::open(dir.path()).names().size(), 5u);
}

TEST(Safetensors, RejectsFileShorterThanItsLengthField) {
  TempDir dir;
  auto p = dir.write("short.safetensors", "abc");
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "truncated"});
}

TEST(Safetensors, RejectsHeaderLengthPastEndOfFile) {
  TempDir dir;
  auto p = writeRaw(dir, "h.safetensors", "{}", 0, 1000);
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "header length 1000"});
}

TEST(Safetensors, RejectsBadJson) {
  TempDir dir;
  auto p = writeRaw(dir, "j.safetensors", "{\"a\": [1, 2", 0);
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "not valid JSON"});
}

TEST(Safetensors, RejectsOffsetsPastEndOfFile) {
  TempDir dir;
  auto p = writeRaw(dir, "o.safetensors",
                    R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "'w'", "past the end"});
}

TEST(Safetensors, RejectsOverlappingOffsets) {
  TempDir dir;
  auto p = writeRaw(dir, "ov.safetensors",
                    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    12);
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "'b'", "overlap"});
}

TEST(Safetensors, RejectsSizeThatDisagreesWithDtypeAndShape) {
  TempDir dir;
  auto p = writeRaw(dir, "s.safetensors",
                    R"({"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,8]}})", 8);
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "'w'", "need 12"});
}

TEST(Safetensors, RejectsUnknownDtype) {
  TempDir dir;
  auto p = writeRaw(dir, "d.safetensors",
                    R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2);
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "'w'", "unsupported dtype"});
}

TEST(Safetensors, RejectsTruncatedFile) {
  TempDir dir;
  const auto path = dir.path() / "t.safetensors";
  saveSafetensors(path, {{"a", torch::ones({8})}, {"b", torch::ones({8})}});
  const std::string raw = testing::readFile(path);
  auto p = dir.write("cut.safetensors", raw.substr(0, raw.size() - 10));
  expectInputError([&] { SafetensorsFile f(p); }, {p.string(), "'b'", "past the end"});
}

TEST(Safetensors, IndexNamingAMissingShardIsAnInputError) {
  TempDir dir;
  dir.write("model.safetensors.index.json",
            R"({"metadata":{},"weight_map":{"w":"model-00001-of-00002.safetensors"}})");
  expectInputError([&] { SafetensorsCheckpoint::open(dir.path()); },
                   {"model.safetensors.index.json", "'w'", "does not exist"});
}

}  // namespace
}  // namespace loom

// TensorBoard event files (train/tensorboard): CRC-32C against known values, the TFRecord
// framing and the first (file_version) event parsed here, and a run's scalars and text read
// back by tbparse and TensorBoard's own EventFileLoader (tests/python/tensorboard_reference.py).

#include "loom/train/tensorboard.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::TempDir;

int64_t unixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t littleEndian(const std::string& bytes, size_t pos, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(bytes[pos + i]);
  return v;
}

/// Splits a TFRecord file into its records; `error` says where the framing breaks.
std::vector<std::string> readRecords(const std::string& file, std::string* error) {
  std::vector<std::string> records;
  error->clear();
  for (size_t pos = 0; pos < file.size();) {
    const auto broken = [&](const char* what) {
      *error = "record " + std::to_string(records.size()) + ": " + what;
    };
    if (file.size() - pos < 12) {
      broken("truncated header");
      break;
    }
    const uint64_t length = littleEndian(file, pos, 8);
    if (littleEndian(file, pos + 8, 4) != maskedCrc32c(file.data() + pos, 8)) {
      broken("bad length crc");
      break;
    }
    if (file.size() - pos - 12 < length + 4) {
      broken("truncated data");
      break;
    }
    const std::string data = file.substr(pos + 12, length);
    if (littleEndian(file, pos + 12 + length, 4) != maskedCrc32c(data.data(), data.size())) {
      broken("bad data crc");
      break;
    }
    records.push_back(data);
    pos += 12 + length + 4;
  }
  return records;
}

uint64_t varint(const std::string& bytes, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; pos < bytes.size(); shift += 7) {
    const auto b = static_cast<unsigned char>(bytes[pos++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  return v;
}

/// The top-level fields of a protobuf message: field number -> raw payload (varints as
/// their decimal value). Enough for the file_version Event.
std::map<uint32_t, std::string> protoFields(const std::string& message) {
  std::map<uint32_t, std::string> fields;
  size_t pos = 0;
  while (pos < message.size()) {
    const uint64_t key = varint(message, pos);
    const auto field = static_cast<uint32_t>(key >> 3);
    switch (key & 7) {
      case 0:
        fields[field] = std::to_string(varint(message, pos));
        break;
      case 1:
        fields[field] = message.substr(pos, 8), pos += 8;
        break;
      case 5:
        fields[field] = message.substr(pos, 4), pos += 4;
        break;
      case 2: {
        const uint64_t n = varint(message, pos);
        fields[field] = message.substr(pos, n);
        pos += n;
        break;
      }
      default:
        ADD_FAILURE() << "wire type " << (key & 7);
        return fields;
    }
  }
  return fields;
}

TEST(TensorBoard, Crc32cMatchesKnownValues) {
  const std::string check = "123456789";  // the standard CRC check string
  EXPECT_EQ(crc32c(check.data(), check.size()), 0xE3069283u);
  const std::string zeros(32, '\0');  // RFC 3720 B.4
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c("", 0), 0u);

  const uint32_t crc = 0xE3069283u;
  EXPECT_EQ(maskedCrc32c(check.data(), check.size()), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
  // From tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c (TensorBoard 2.21).
  EXPECT_EQ(maskedCrc32c(check.data(), check.size()), 0xC78AB0E5u);
  const std::string version = "brain.Event:2";
  EXPECT_EQ(maskedCrc32c(version.data(), version.size()), 0x7C0601EEu);
}

TEST(TensorBoard, FileNameFramingAndFileVersionEvent) {
  TempDir dir("loom-tensorboard");
  const int64_t before = unixSeconds();
  TensorBoardWriter writer(dir.path() / "run");  // a folder that does not exist yet
  const int64_t after = unixSeconds();

  const std::string name = writer.path().filename().string();
  EXPECT_EQ(writer.path().parent_path(), dir.path() / "run");
  const std::string prefix = "events.out.tfevents.";
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  const int64_t seconds = std::stoll(name.substr(prefix.size()));
  EXPECT_GE(seconds, before);
  EXPECT_LE(seconds, after);
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(name, prefix + std::to_string(seconds) + "." + host + "." + std::to_string(getpid()) +
                      ".loom");

  for (int64_t step = 1; step <= 3; ++step) writer.addScalar("train/loss", step, 1.0 / step);
  writer.addText("eval/samples", 3, "**hello**");
  writer.flush();  // readable while the writer is still open
  std::string error;
  const auto records = readRecords(testing::readFile(writer.path()), &error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(records.size(), 5u);

  // event.proto Event: wall_time = 1 (double), file_version = 3; no step, no summary.
  const auto first = protoFields(records[0]);
  EXPECT_EQ(first.size(), 2u);
  ASSERT_EQ(first.count(1), 1u);
  ASSERT_EQ(first.at(1).size(), 8u);
  double wall_time = 0;
  const uint64_t bits = littleEndian(first.at(1), 0, 8);
  std::memcpy(&wall_time, &bits, 8);
  EXPECT_GE(wall_time, static_cast<double>(before));
  EXPECT_LT(wall_time, static_cast<double>(after + 1));
  EXPECT_EQ(first.count(3) ? first.at(3) : "", "brain.Event:2");
  for (size_t i = 1; i < records.size(); ++i) EXPECT_EQ(protoFields(records[i]).count(5), 1u);

  // A corrupted byte must be caught by the framing check above (the check can fail).
  std::string damaged = testing::readFile(writer.path());
  damaged[damaged.size() - 6] ^= 1;
  readRecords(damaged, &error);
  EXPECT_EQ(error, "record 4: bad data crc");
}

TEST(TensorBoard, SecondWriterDoesNotOverwriteTheFirst) {
  TempDir dir("loom-tensorboard");
  TensorBoardWriter a(dir.path());
  a.addScalar("x", 1, 1.0);
  a.flush();
  TensorBoardWriter b(dir.path());
  b.flush();
  EXPECT_NE(a.path(), b.path());
  std::string error;
  EXPECT_EQ(readRecords(testing::readFile(a.path()), &error).size(), 2u);
  EXPECT_EQ(readRecords(testing::readFile(b.path()), &error).size(), 1u);
  EXPECT_EQ(error, "");
}

TEST(TensorBoard, UncreatableDirectoryThrows) {
  TempDir dir("loom-tensorboard");
  const auto file = dir.write("plain-file", "not a folder");
  EXPECT_THROW(TensorBoardWriter(file / "run"), Error);
}

TEST(TensorBoard, TbparseAndTensorBoardReadTheRunBack) {
  TempDir dir("loom-tensorboard");
  std::map<std::pair<std::string, int64_t>, double> scalars;
  const std::vector<std::tuple<std::string, int64_t, std::string>> texts = {
      {"eval/samples", 10,
       "## Sample 1\n\n| prompt | answer |\n|---|---|\n| Grüße | 你好，世界 😀 |\n\n"
       "```\ncode  block\n```\n"},
      {"eval/samples", 20, "*émphasis* and `ticks`\r\nsecond line\n\nthird paragraph"}};
  const auto events = dir.path() / "events";
  {
    TensorBoardWriter writer(events);
    for (int64_t step = 1; step <= 20; ++step) {
      const double loss = step == 7 ? -0.3125 : 2.5 / std::sqrt(static_cast<double>(step));
      const double lr = step == 1 ? 1e-7 : 3e-4 * std::min<int64_t>(step, 5) / 5;
      const double grad_norm = 0.1 + 1.0 / (3.0 * static_cast<double>(step));
      for (const auto& [tag, value] : {std::pair<std::string, double>{"train/loss", loss},
                                       {"train/lr", lr},
                                       {"train/grad_norm", grad_norm}}) {
        writer.addScalar(tag, step, value);
        scalars[{tag, step}] = value;
      }
    }
    for (const auto& [tag, step, markdown] : texts) writer.addText(tag, step, markdown);
  }  // the destructor flushes

  const auto out = dir.path() / "read.json";
  const auto py =
      testing::runPythonScript("tensorboard_reference.py", {events.string(), out.string()});
  ASSERT_EQ(py.exit_code, 0) << py.output;
  const auto read = nlohmann::json::parse(testing::readFile(out));

  ASSERT_EQ(read["files"].size(), 1u) << read["files"];
  EXPECT_EQ(read["files"].begin().value()["records"], 1 + scalars.size() + texts.size());
  EXPECT_EQ(read["files"].begin().value()["file_version"], "brain.Event:2");

  ASSERT_EQ(read["scalars"].size(), scalars.size());
  for (const auto& s : read["scalars"]) {
    const auto it = scalars.find({s["tag"].get<std::string>(), s["step"].get<int64_t>()});
    ASSERT_NE(it, scalars.end()) << s;
    const double value = s["value"].get<double>();
    // simple_value is a float32 in the proto: what comes back is the written value rounded
    // to float32 (exactly), within float32 rounding (2^-24 < 1e-7 relative) of the double.
    EXPECT_EQ(value, static_cast<double>(static_cast<float>(it->second))) << s;
    EXPECT_NEAR(value, it->second, 1e-7 * std::abs(it->second)) << s;
  }

  ASSERT_EQ(read["text"].size(), texts.size());
  for (const auto& [tag, step, markdown] : texts) {
    bool found = false;
    for (const auto& t : read["text"]) {
      if (t["tag"] == tag && t["step"] == step) {
        EXPECT_EQ(t["value"].get<std::string>(), markdown);
        found = true;
      }
    }
    EXPECT_TRUE(found) << tag << " at step " << step;
  }
}

}  // namespace
}  // namespace loom

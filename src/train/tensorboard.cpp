#include "loom/train/tensorboard.hpp"

#include <unistd.h>  // gethostname, getpid

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>

#include "loom/core/error.hpp"

namespace loom {
namespace detail {
namespace {

// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/): each field is a
// varint key (field_number << 3 | wire_type) followed by its payload.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void putVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void putKey(std::string& out, uint32_t field, WireType type) { putVarint(out, field << 3 | type); }

// Little-endian whatever the host's byte order.
void putLittleEndian(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// int64 fields are varints of the two's complement (a negative one takes 10 bytes).
void putInt64(std::string& out, uint32_t field, int64_t v) {
  putKey(out, field, kVarint);
  putVarint(out, static_cast<uint64_t>(v));
}

void putDouble(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  putKey(out, field, kFixed64);
  putLittleEndian(out, bits, 8);
}

void putFloat(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  putKey(out, field, kFixed32);
  putLittleEndian(out, bits, 4);
}

// string, bytes and embedded messages alike: length, then the bytes.
void putBytes(std::string& out, uint32_t field, const std::string& bytes) {
  putKey(out, field, kLengthDelimited);
  putVarint(out, bytes.size());
  out += bytes;
}

double wallTime() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// event.proto, message Event: wall_time = 1 (double), step = 2 (int64), file_version = 3
// (string), summary = 5 (Summary). Like protobuf itself, a step of 0 (the default) is left
// out, so the records are byte for byte what protobuf would serialize.
std::string fileVersionEvent() {
  std::string out;
  putDouble(out, 1, wallTime());
  putBytes(out, 3, "brain.Event:2");
  return out;
}

std::string summaryEvent(int64_t step, const std::string& summary) {
  std::string out;
  putDouble(out, 1, wallTime());
  if (step != 0) putInt64(out, 2, step);
  putBytes(out, 5, summary);
  return out;
}

// summary.proto, message Summary { repeated Value value = 1; } with one Value whose
// tag = 1 (string) and the rest (`fields`) already encoded.
std::string summary(const std::string& tag, const std::string& fields) {
  std::string value;
  putBytes(value, 1, tag);
  value += fields;
  std::string out;
  putBytes(out, 1, value);
  return out;
}

// Summary.Value.simple_value = 2 (float).
std::string scalarFields(double v) {
  std::string out;
  putFloat(out, 2, static_cast<float>(v));
  return out;
}

// What tensorboard.plugins.text.summary_v2.text_pb writes:
//   Summary.Value.tensor = 8: tensor.proto TensorProto { dtype = 1: types.proto DT_STRING
//     (7); tensor_shape = 2: tensor_shape.proto TensorShapeProto {} (no dims: a scalar);
//     string_val = 8: the UTF-8 bytes }
//   Summary.Value.metadata = 9: SummaryMetadata { plugin_data = 1: PluginData {
//     plugin_name = 1: "text" } } (content = 2, an empty TextPluginData, left out).
std::string textFields(const std::string& markdown) {
  constexpr uint64_t kDtString = 7;
  std::string tensor;
  putKey(tensor, 1, kVarint);
  putVarint(tensor, kDtString);
  putBytes(tensor, 2, "");
  putBytes(tensor, 8, markdown);
  std::string plugin_data;
  putBytes(plugin_data, 1, "text");
  std::string metadata;
  putBytes(metadata, 1, plugin_data);
  std::string out;
  putBytes(out, 8, tensor);
  putBytes(out, 9, metadata);
  return out;
}

constexpr std::array<uint32_t, 256> crcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = crcTable();

std::string hostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace
}  // namespace detail

uint32_t crc32c(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) crc = detail::kCrcTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t maskedCrc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("TensorBoard: cannot create " + dir.string() + ": " + ec.message());
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  const std::string stem = "events.out.tfevents." + std::to_string(seconds) + "." +
                           detail::hostName() + "." + std::to_string(getpid());
  // A second writer in the same second of the same process (tests) must not truncate the
  // first one's file.
  path_ = dir / (stem + ".loom");
  for (int n = 2; std::filesystem::exists(path_); ++n) {
    path_ = dir / (stem + "." + std::to_string(n) + ".loom");
  }
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_)
    throw Error("TensorBoard: cannot open " + path_.string() + ": " + std::strerror(errno));
  writeRecord(detail::fileVersionEvent());
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (out_.is_open()) out_.flush();
}

void TensorBoardWriter::addScalar(const std::string& tag, int64_t step, double value) {
  writeRecord(detail::summaryEvent(step, detail::summary(tag, detail::scalarFields(value))));
}

void TensorBoardWriter::addText(const std::string& tag, int64_t step, const std::string& markdown) {
  writeRecord(detail::summaryEvent(step, detail::summary(tag, detail::textFields(markdown))));
}

void TensorBoardWriter::flush() {
  out_.flush();
  if (!out_)
    throw Error("TensorBoard: cannot write " + path_.string() + ": " + std::strerror(errno));
}

// TFRecord: uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes, the
// data, uint32 masked CRC-32C of the data.
void TensorBoardWriter::writeRecord(const std::string& event) {
  std::string record;
  detail::putLittleEndian(record, event.size(), 8);
  detail::putLittleEndian(record, maskedCrc32c(record.data(), 8), 4);
  record += event;
  detail::putLittleEndian(record, maskedCrc32c(event.data(), event.size()), 4);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  if (!out_)
    throw Error("TensorBoard: cannot write " + path_.string() + ": " + std::strerror(errno));
}

}  // namespace loom

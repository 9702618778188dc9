#pragma once
// TensorBoard event files written without protobuf or TensorFlow: the TFRecord framing and
// the few Event / Summary messages Loom needs (scalars, markdown text) are encoded by hand.
// The field numbers are those of tensorboard/compat/proto/{event,summary,tensor,
// tensor_shape,types}.proto; tests/train/tensorboard_test.cpp reads the files back with
// tbparse and TensorBoard's own loader.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace loom {

/// One event file of a run. Not thread-safe; one writer per file (rank 0's MetricsLog).
class TensorBoardWriter {
 public:
  /// Creates `dir` if missing and <dir>/events.out.tfevents.<unix seconds>.<host>.<pid>.loom
  /// (".<n>.loom" with n = 2, 3, ... if that name is taken), whose first record is the
  /// file_version "brain.Event:2" event. Throws loom::Error if it cannot.
  explicit TensorBoardWriter(const std::filesystem::path& dir);
  /// Flushes; errors are swallowed here (call flush() to see them).
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  /// A scalar at `step`. Stored as a float32 (Summary.Value.simple_value).
  void addScalar(const std::string& tag, int64_t step, double value);
  /// Markdown for the text dashboard (text plugin, a scalar DT_STRING tensor).
  void addText(const std::string& tag, int64_t step, const std::string& markdown);
  /// Pushes buffered records to the file; throws loom::Error on a write failure.
  void flush();
  const std::filesystem::path& path() const { return path_; }

 private:
  /// Appends one TFRecord holding a serialized Event.
  void writeRecord(const std::string& event);

  std::filesystem::path path_;
  std::ofstream out_;
};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) as TFRecord uses it.
uint32_t crc32c(const void* data, size_t size);
/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t maskedCrc32c(const void* data, size_t size);

}  // namespace loom

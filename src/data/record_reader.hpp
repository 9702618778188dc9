#pragma once
// `trainer prepare`'s input side: records read in order from JSONL, JSON-array and .txt files,
// each numbered across all inputs and within its own file (its source), with the split it
// goes to and how many times (mix_plan.hpp). Reading errors surface in order, as records.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "loom/data/prepare.hpp"

namespace loom {
class MixPlan;
}  // namespace loom

namespace loom::detail {

/// One record as read: a JSONL or text line (`text`), or an element of a JSON array
/// (`value`), or a reading error that surfaces in order.
struct RawRecord {
  int64_t index = 0;         // across all inputs
  size_t source = 0;         // the input file it came from
  int64_t source_index = 0;  // its number within that file
  bool validation = false;   // goes to the validation split (once)
  int64_t copies = 1;        // times it goes into the training split
  std::string where;         // "file:line" or "file[i]"
  std::string text;
  nlohmann::ordered_json value;
  bool parsed = false;  // value holds the record (JSON array element)
  bool plain = false;   // text is a document, not JSON (.txt)
  int64_t bytes = 0;    // input bytes it accounts for (progress)
  std::exception_ptr error;
};

enum class FileKind { kJsonl, kJsonArray, kText };

/// How a file is read: a JSON array when its first non-blank byte is '[', plain text for
/// other .txt files (--format text only), JSONL otherwise. InputError for a missing or empty
/// file, a UTF-16/32 file, and .txt under another format.
FileKind fileKind(const std::filesystem::path& path, PrepareFormat format);

/// Where records go without a mix: record `index` (across inputs) to validation when a
/// seeded hash of it falls below `fraction`.
bool inValidation(uint64_t seed, int64_t index, double fraction);

class RecordReader {
 public:
  /// Reads `files` in order. With a `plan` (weighted inputs), each record's split and copies
  /// come from it and records left out of the mix are skipped unread (counted in skipped());
  /// without one, validation is decided by inValidation(seed, index, val_fraction).
  RecordReader(std::vector<std::filesystem::path> files, std::vector<FileKind> kinds,
               const MixPlan* plan, uint64_t seed, double val_fraction);

  /// Fills `out` with up to `max_records` records / `max_bytes` bytes; empty at the end.
  /// A reading error becomes the last record of the chunk and ends the input.
  void fill(std::vector<RawRecord>& out, int64_t max_bytes, int64_t max_records);

  /// Records of each file left out of the mix.
  const std::vector<int64_t>& skipped() const { return skipped_; }

  /// The number of records in `file` (as this reader numbers them).
  static int64_t countRecords(const std::filesystem::path& file, FileKind kind);

 private:
  bool next(RawRecord& r);
  void openFile();
  bool nextInFile(RawRecord& r);

  std::vector<std::filesystem::path> files_;
  std::vector<FileKind> kinds_;
  const MixPlan* plan_;
  uint64_t seed_;
  double val_fraction_;
  std::vector<int64_t> skipped_;
  int64_t pending_bytes_ = 0;  // of skipped records, reported with the next one (progress)
  size_t file_ = 0;
  bool open_ = false;
  bool failed_ = false;
  std::ifstream in_;
  nlohmann::ordered_json array_;
  int64_t array_bytes_ = 0;
  size_t element_ = 0;
  int64_t line_ = 0;
  int64_t records_in_file_ = 0;
  int64_t next_index_ = 0;
};

}  // namespace loom::detail

// See record_reader.hpp.

#include "record_reader.hpp"

#include "loom/core/error.hpp"
#include "loom/core/splitmix.hpp"
#include "loom/core/text_encoding.hpp"
#include "loom/data/mix_plan.hpp"

namespace loom::detail {

namespace {

bool isBlank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

/// First non-whitespace byte of a file after a UTF-8 byte-order mark, or -1 for a file of
/// whitespace only. A UTF-16/32 file is refused here, by name, before any record is read.
int firstNonBlankByte(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  skipUtf8Bom(in, path);
  char c;
  while (in.get(c)) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return static_cast<unsigned char>(c);
  }
  return -1;
}

}  // namespace

FileKind fileKind(const std::filesystem::path& path, PrepareFormat format) {
  LOOM_INPUT_CHECK(std::filesystem::exists(path), path.string() << ": no such input file");
  LOOM_INPUT_CHECK(std::filesystem::is_regular_file(path), path.string() << ": not a file");
  const int first = firstNonBlankByte(path);
  LOOM_INPUT_CHECK(first >= 0, path.string() << ": no records (the file is empty)");
  if (first == '[') return FileKind::kJsonArray;
  if (path.extension() == ".txt") {
    LOOM_INPUT_CHECK(format == PrepareFormat::kText,
                     path.string() << ": a .txt file holds plain text, which only --format text "
                                      "reads; give JSONL for --format "
                                   << prepareFormatName(format));
    return FileKind::kText;
  }
  return FileKind::kJsonl;
}

bool inValidation(uint64_t seed, int64_t index, double fraction) {
  if (fraction <= 0) return false;
  const uint64_t h = splitMix64(splitMix64(seed) ^ static_cast<uint64_t>(index));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < fraction;
}

RecordReader::RecordReader(std::vector<std::filesystem::path> files, std::vector<FileKind> kinds,
                           const MixPlan* plan, uint64_t seed, double val_fraction)
    : files_(std::move(files)),
      kinds_(std::move(kinds)),
      plan_(plan),
      seed_(seed),
      val_fraction_(val_fraction),
      skipped_(files_.size(), 0) {}

int64_t RecordReader::countRecords(const std::filesystem::path& file, FileKind kind) {
  RecordReader reader({file}, {kind}, nullptr, 0, 0.0);
  int64_t n = 0;
  RawRecord r;
  while (reader.next(r)) ++n;
  return n;
}

void RecordReader::fill(std::vector<RawRecord>& out, int64_t max_bytes, int64_t max_records) {
  int64_t bytes = 0;
  while (!failed_ && static_cast<int64_t>(out.size()) < max_records && bytes < max_bytes) {
    RawRecord r;
    try {
      if (!next(r)) return;
    } catch (...) {
      failed_ = true;
      RawRecord e;
      e.index = next_index_;
      e.error = std::current_exception();
      out.push_back(std::move(e));
      return;
    }
    bytes += r.bytes;
    out.push_back(std::move(r));
  }
}

bool RecordReader::next(RawRecord& r) {
  for (;;) {
    if (file_ >= files_.size()) return false;
    if (!open_) openFile();
    if (nextInFile(r)) {
      r.source = file_;
      r.source_index = records_in_file_++;
      r.index = next_index_++;
      r.bytes += pending_bytes_;
      pending_bytes_ = 0;
      if (!plan_) {
        r.validation = inValidation(seed_, r.index, val_fraction_);
        r.copies = r.validation ? 0 : 1;
        return true;
      }
      r.validation = plan_->inValidation(r.source, r.source_index);
      r.copies = plan_->copies(r.source, r.source_index);
      if (r.validation || r.copies > 0) return true;
      ++skipped_[file_];  // left out of the mix: not parsed, not checked
      pending_bytes_ = r.bytes;
      continue;
    }
    LOOM_INPUT_CHECK(records_in_file_ > 0, files_[file_].string()
                                               << ": no records (the file is empty)");
    open_ = false;
    in_.close();
    array_ = nlohmann::ordered_json();
    ++file_;
  }
}

void RecordReader::openFile() {
  const auto& path = files_[file_];
  records_in_file_ = 0;
  line_ = 0;
  element_ = 0;
  if (kinds_[file_] == FileKind::kJsonArray) {
    std::ifstream in(path, std::ios::binary);
    LOOM_INPUT_CHECK(in, path.string() << ": cannot open for reading");
    try {
      array_ = nlohmann::ordered_json::parse(in);
    } catch (const nlohmann::ordered_json::parse_error& e) {
      LOOM_INPUT_CHECK(false, path.string() << ": malformed JSON (byte " << e.byte
                                            << "): " << printableText(e.what()));
    } catch (const nlohmann::json::exception&
                 e) {  // e.g. out_of_range: a number beyond a double's range
      LOOM_INPUT_CHECK(false, path.string() << ": malformed JSON: " << printableText(e.what()));
    }
    LOOM_INPUT_CHECK(array_.is_array(), path.string() << ": expected a JSON array of records");
    array_bytes_ = static_cast<int64_t>(std::filesystem::file_size(path));
  } else {
    in_.open(path, std::ios::binary);
    LOOM_INPUT_CHECK(in_, path.string() << ": cannot open for reading");
    // Every reader the same way: a UTF-8 byte-order mark is not part of the first record.
    skipUtf8Bom(in_, path);
  }
  open_ = true;
}

bool RecordReader::nextInFile(RawRecord& r) {
  const auto& path = files_[file_];
  if (kinds_[file_] == FileKind::kJsonArray) {
    if (element_ >= array_.size()) return false;
    r.where = path.string() + "[" + std::to_string(element_) + "]";
    r.value = std::move(array_[element_]);
    r.parsed = true;
    // Spread the file's bytes over its elements, so that progress moves.
    r.bytes = array_bytes_ / static_cast<int64_t>(array_.size());
    ++element_;
    return true;
  }
  std::string line;
  while (std::getline(in_, line)) {
    ++line_;
    r.bytes = static_cast<int64_t>(line.size()) + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (kinds_[file_] == FileKind::kText) {
      r.plain = true;
    } else if (isBlank(line)) {
      continue;  // e.g. a trailing empty line; its bytes are not counted in progress
    }
    r.where = path.string() + ":" + std::to_string(line_);
    r.text = std::move(line);
    return true;
  }
  LOOM_INPUT_CHECK(in_.eof(), path.string() << ": read error after line " << line_);
  return false;
}

}  // namespace loom::detail

// `trainer prepare`: a three-stage pipeline over chunks of records. The calling thread reads
// chunk k+1 and writes chunk k-1 while a pool of workers tokenizes chunk k; results are
// written in record order, so the files do not depend on the number of threads. Errors are
// stored with the record they belong to and raised when that record's turn to be written
// comes, so the first bad record in input order is the one reported, whatever the threads.

#include "loom/data/prepare.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "loom/core/error.hpp"
#include "loom/core/format.hpp"
#include "loom/core/json_fields.hpp"
#include "loom/core/log.hpp"
#include "loom/core/text_encoding.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/tokenizer.hpp"

namespace loom {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------
// Templates: literal text and `{Field}` placeholders.

struct TemplatePart {
  bool is_field = false;
  std::string text;  // literal text, or the field name
};

std::vector<TemplatePart> parseTemplate(const std::string& text, const std::string& option) {
  // Checked here, first: the template is recorded in JSON (the files' `template` attribute).
  size_t bad = 0;
  LOOM_INPUT_CHECK(isValidUtf8(text, &bad),
                   option << ": not valid UTF-8 (at byte " << bad << " of the template)");
  std::vector<TemplatePart> parts;
  std::string literal;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      literal += '{';
      ++i;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      literal += '}';
      ++i;
    } else if (c == '{') {
      const size_t close = text.find('}', i + 1);
      LOOM_INPUT_CHECK(close != std::string::npos,
                       option << ": '{' at character " << i
                              << " has no closing '}' (write {{ for a literal brace)");
      const std::string name = text.substr(i + 1, close - i - 1);
      LOOM_INPUT_CHECK(!name.empty() && name.find('{') == std::string::npos,
                       option << ": empty or malformed placeholder at character " << i
                              << "; expected {FieldName}");
      if (!literal.empty()) parts.push_back({false, std::move(literal)});
      literal.clear();
      parts.push_back({true, name});
      i = close;
    } else if (c == '}') {
      LOOM_INPUT_CHECK(false, option << ": '}' at character " << i
                                     << " closes nothing (write }} for a literal brace)");
    } else {
      literal += c;
    }
  }
  if (!literal.empty()) parts.push_back({false, std::move(literal)});
  return parts;
}

std::string fieldText(const json& record, const std::string& field, const std::string& where) {
  const auto it = record.find(field);
  LOOM_INPUT_CHECK(it != record.end(),
                   where << ": the template uses field '" << field << "', which this record lacks");
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number() || it->is_boolean()) return it->dump();
  LOOM_INPUT_CHECK(false, where << ": field '" << field << "' is " << it->type_name()
                                << "; the template needs a string or number");
  return {};
}

std::string renderTemplate(const std::vector<TemplatePart>& parts, const json& record,
                           const std::string& where) {
  std::string out;
  for (const auto& p : parts) out += p.is_field ? fieldText(record, p.text, where) : p.text;
  return out;
}

std::string templateSource(const std::vector<TemplatePart>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.is_field) {
      out += "{" + p.text + "}";
      continue;
    }
    for (char c : p.text) {
      if (c == '{' || c == '}') out += c;
      out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Reading records.

/// One record as read: a JSONL or text line (`text`), or an element of a JSON array
/// (`value`), or a reading error that surfaces in order.
struct RawRecord {
  int64_t index = 0;  // across all inputs
  std::string where;  // "file:line" or "file[i]"
  std::string text;
  json value;
  bool parsed = false;  // value holds the record (JSON array element)
  bool plain = false;   // text is a document, not JSON (.txt)
  int64_t bytes = 0;    // input bytes it accounts for (progress)
  std::exception_ptr error;
};

enum class FileKind { kJsonl, kJsonArray, kText };

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

class RecordReader {
 public:
  RecordReader(std::vector<std::filesystem::path> files, std::vector<FileKind> kinds)
      : files_(std::move(files)), kinds_(std::move(kinds)) {}

  /// Fills `out` with up to `max_records` records / `max_bytes` bytes; empty at the end.
  /// A reading error becomes the last record of the chunk and ends the input.
  void fill(std::vector<RawRecord>& out, int64_t max_bytes, int64_t max_records) {
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

 private:
  bool next(RawRecord& r) {
    for (;;) {
      if (file_ >= files_.size()) return false;
      if (!open_) openFile();
      if (nextInFile(r)) {
        ++records_in_file_;
        r.index = next_index_++;
        return true;
      }
      LOOM_INPUT_CHECK(records_in_file_ > 0, files_[file_].string()
                                                 << ": no records (the file is empty)");
      open_ = false;
      in_.close();
      array_ = json();
      ++file_;
    }
  }

  void openFile() {
    const auto& path = files_[file_];
    records_in_file_ = 0;
    line_ = 0;
    element_ = 0;
    if (kinds_[file_] == FileKind::kJsonArray) {
      std::ifstream in(path, std::ios::binary);
      LOOM_INPUT_CHECK(in, path.string() << ": cannot open for reading");
      try {
        array_ = json::parse(in);
      } catch (const json::parse_error& e) {
        LOOM_INPUT_CHECK(false, path.string() << ": malformed JSON (byte " << e.byte
                                              << "): " << printableText(e.what()));
      } catch (const json::exception& e) {  // e.g. out_of_range: a number beyond a double's range
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

  bool nextInFile(RawRecord& r) {
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

  std::vector<std::filesystem::path> files_;
  std::vector<FileKind> kinds_;
  size_t file_ = 0;
  bool open_ = false;
  bool failed_ = false;
  std::ifstream in_;
  json array_;
  int64_t array_bytes_ = 0;
  size_t element_ = 0;
  int64_t line_ = 0;
  int64_t records_in_file_ = 0;
  int64_t next_index_ = 0;
};

// ---------------------------------------------------------------------------------------
// Making samples.

struct Piece {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};

enum class RecordStatus { kOk, kEmpty, kTruncated, kDropped };

struct RecordResult {
  std::vector<Piece> pieces;
  RecordStatus status = RecordStatus::kOk;
  int64_t record_index = 0;
  std::exception_ptr error;
};

class SampleMaker {
 public:
  SampleMaker(const Tokenizer& tokenizer, const PrepareOptions& options, ChatTemplate family,
              std::optional<int32_t> eos, std::vector<TemplatePart> prompt,
              std::vector<TemplatePart> completion)
      : tokenizer_(tokenizer),
        format_(options.format),
        seq_len_(options.seq_len),
        policy_(options.on_overflow),
        family_(family),
        eos_(eos),
        prompt_(std::move(prompt)),
        completion_(std::move(completion)) {}

  RecordResult make(const RawRecord& raw) const {
    RecordResult result;
    result.record_index = raw.index;
    if (raw.error) {
      result.error = raw.error;
      return result;
    }
    try {
      makeInto(raw, result);
    } catch (const InputError& e) {
      // Errors from deeper code (the tokenizer, the chat renderer) may not know the record.
      const std::string what = e.what();
      result.error = what.rfind(raw.where, 0) == 0
                         ? std::current_exception()
                         : std::make_exception_ptr(InputError(raw.where + ": " + what));
    } catch (...) {
      result.error = std::current_exception();
    }
    return result;
  }

 private:
  void makeInto(const RawRecord& raw, RecordResult& result) const {
    if (raw.plain) {
      size_t bad = 0;
      LOOM_INPUT_CHECK(isValidUtf8(raw.text, &bad),
                       raw.where << ": invalid UTF-8 at byte " << bad << " of the line");
      makeText(raw.text, result);
      return;
    }
    json parsed;
    if (!raw.parsed) {
      try {
        parsed = json::parse(raw.text);
      } catch (const json::parse_error& e) {
        LOOM_INPUT_CHECK(false, raw.where << ": malformed JSON (column " << e.byte
                                          << "): " << printableText(e.what()));
      } catch (const json::exception& e) {  // e.g. out_of_range: a number beyond a double's range
        LOOM_INPUT_CHECK(false, raw.where << ": malformed JSON: " << printableText(e.what()));
      }
    }
    const json& record = raw.parsed ? raw.value : parsed;
    LOOM_INPUT_CHECK(record.is_object(),
                     raw.where << ": expected a JSON object, got " << record.type_name());
    switch (format_) {
      case PrepareFormat::kText:
        makeText(requireString(record, "text", raw.where, "--format text records are {\"text\"}"),
                 result);
        return;
      case PrepareFormat::kAlpaca:
        makeAlpaca(record, raw.where, result);
        return;
      case PrepareFormat::kChat:
        makeChat(record, raw.where, result);
        return;
      case PrepareFormat::kTemplate:
        makeTemplate(record, raw.where, result);
        return;
    }
  }

  void makeText(const std::string& text, RecordResult& result) const {
    if (text.empty()) {
      result.status = RecordStatus::kEmpty;
      return;
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 2);
    tokenizer_.encode(text, ids);
    ids.push_back(*eos_);
    // Pieces overlap by one token: the first token of a sample is never a target, so the
    // overlap makes every token after the document's first a target exactly once.
    const auto n = static_cast<int64_t>(ids.size());
    for (int64_t begin = 0;; begin += seq_len_ - 1) {
      const int64_t end = std::min(n, begin + seq_len_);
      Piece p;
      p.ids.assign(ids.begin() + begin, ids.begin() + end);
      p.mask.assign(p.ids.size(), 1);
      result.pieces.push_back(std::move(p));
      if (end == n) break;
    }
  }

  void makeAlpaca(const json& record, const std::string& where, RecordResult& result) const {
    static constexpr const char* kExpected =
        "alpaca records are {\"instruction\", \"input\" (optional), \"output\"}";
    const std::string instruction = requireString(record, "instruction", where, kExpected);
    const std::string input = optionalString(record, "input", where);
    const std::string output = requireString(record, "output", where, kExpected);
    const std::string system = optionalString(record, "system", where);
    if (output.empty()) {
      result.status = RecordStatus::kEmpty;
      return;
    }
    std::vector<ChatMessage> messages = alpacaMessages(system, instruction, input);
    messages.push_back({"assistant", output, std::nullopt});
    addChat(renderChat(family_, messages, false), result);
  }

  void makeChat(const json& record, const std::string& where, RecordResult& result) const {
    const auto it = record.find("messages");
    LOOM_INPUT_CHECK(it != record.end(),
                     where << ": missing field 'messages' (chat records are {\"messages\": "
                              "[{\"role\", \"content\"}, ...]})");
    const auto messages = parseChatMessages(*it, where);
    const bool has_answer = std::any_of(messages.begin(), messages.end(), [](const auto& m) {
      return m.role == "assistant" &&
             (!m.content.empty() || (m.reasoning_content && !m.reasoning_content->empty()));
    });
    if (!has_answer) {
      result.status = RecordStatus::kEmpty;
      return;
    }
    addChat(renderChat(family_, messages, false), result);
  }

  void addChat(const RenderedChat& chat, RecordResult& result) const {
    TokenizedChat t = tokenizeChat(tokenizer_, chat);
    addSample(std::move(t.ids), std::move(t.loss_mask), result);
  }

  void makeTemplate(const json& record, const std::string& where, RecordResult& result) const {
    const std::string prompt = renderTemplate(prompt_, record, where);
    const std::string completion = renderTemplate(completion_, record, where);
    if (completion.empty()) {
      result.status = RecordStatus::kEmpty;
      return;
    }
    std::vector<int32_t> ids;
    ids.reserve((prompt.size() + completion.size()) / 3 + 2);
    tokenizer_.encode(prompt, ids);
    const size_t prompt_tokens = ids.size();
    tokenizer_.encode(completion, ids);
    ids.push_back(*eos_);
    std::vector<uint8_t> mask(ids.size(), 1);
    std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(prompt_tokens), 0);
    addSample(std::move(ids), std::move(mask), result);
  }

  void addSample(std::vector<int32_t> ids, std::vector<uint8_t> mask, RecordResult& result) const {
    if (static_cast<int64_t>(ids.size()) > seq_len_) {
      if (policy_ == OverflowPolicy::kDrop) {
        result.status = RecordStatus::kDropped;
        return;
      }
      ids.resize(static_cast<size_t>(seq_len_));
      mask.resize(static_cast<size_t>(seq_len_));
      // Position 0 is never a target; a sample with nothing left to learn is not kept.
      if (std::find(mask.begin() + 1, mask.end(), 1) == mask.end()) {
        result.status = RecordStatus::kDropped;
        return;
      }
      result.status = RecordStatus::kTruncated;
    }
    result.pieces.push_back({std::move(ids), std::move(mask)});
  }

  const Tokenizer& tokenizer_;
  PrepareFormat format_;
  int64_t seq_len_;
  OverflowPolicy policy_;
  ChatTemplate family_;
  std::optional<int32_t> eos_;
  std::vector<TemplatePart> prompt_;
  std::vector<TemplatePart> completion_;
};

// ---------------------------------------------------------------------------------------
// A pool of workers that run fn(0..count-1) for one chunk at a time.

class WorkerPool {
 public:
  explicit WorkerPool(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  /// Abandons the items not yet started and joins (the chunk the job reads must outlive it).
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      if (job_) job_->cancelled = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Starts fn(i) for i in [0, count); the previous job must be finished. fn must not throw.
  void start(size_t count, std::function<void(size_t)> fn) {
    auto job = std::make_shared<Job>();
    job->count = count;
    job->fn = std::move(fn);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = std::move(job);
      ++generation_;
    }
    wake_.notify_all();
  }

  /// True when every item of the current job is done; waits at most `timeout` for that.
  bool waitFor(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return done_.wait_for(lock, timeout, [&] { return !job_ || job_->completed == job_->count; });
  }

 private:
  // A job is shared with the workers, so a worker that wakes late for an old job only finds
  // it finished; start() never touches what a running worker reads.
  struct Job {
    size_t count = 0;
    std::function<void(size_t)> fn;
    std::atomic<size_t> next{0};
    size_t completed = 0;  // under mutex_
    std::atomic<bool> cancelled{false};
  };

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      size_t mine = 0;
      for (;;) {
        const size_t i = job->next.fetch_add(1);
        if (i >= job->count || job->cancelled) break;
        job->fn(i);
        ++mine;
      }
      if (mine > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        job->completed += mine;
        if (job->completed == job->count) done_.notify_all();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------------------
// Progress on stderr.

std::string humanCount(double v) {
  char buf[32];
  if (v >= 1e9) {
    std::snprintf(buf, sizeof(buf), "%.2fG", v / 1e9);
  } else if (v >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", v / 1e6);
  } else if (v >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", v / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  }
  return buf;
}

class Progress {
 public:
  Progress(bool enabled, int64_t total_bytes)
      : enabled_(enabled),
        tty_(::isatty(STDERR_FILENO) == 1),
        total_(std::max<int64_t>(total_bytes, 1)),
        start_(Clock::now()),
        last_(start_) {}

  /// Ends a bar left unfinished by an error, so the message starts on its own line.
  ~Progress() {
    if (drawn_ && !finished_) std::fputc('\n', stderr);
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(int64_t bytes, int64_t tokens, bool final = false) {
    if (!enabled_) return;
    const auto now = Clock::now();
    const double since_last = std::chrono::duration<double>(now - last_).count();
    if (!final && since_last < (tty_ ? 0.2 : 5.0)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double fraction = std::min(1.0, static_cast<double>(bytes) / total_);
    const double rate = elapsed > 0 ? bytes / elapsed : 0.0;
    const double eta = rate > 0 ? (total_ - bytes) / rate : NAN;
    char line[256];
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(fraction * kWidth);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(kWidth, '.');
      std::snprintf(line, sizeof(line),
                    "\rprepare %3.0f%% [%s] %.1f/%.1f MB  %.1f MB/s  %s tok/s  ETA %s ",
                    fraction * 100, bar.c_str(), bytes / 1e6, total_ / 1e6, rate / 1e6,
                    humanCount(elapsed > 0 ? tokens / elapsed : 0).c_str(),
                    final ? formatDuration(elapsed).c_str() : formatDuration(eta).c_str());
      std::fputs(line, stderr);
      drawn_ = true;
      finished_ = final;
      if (final) std::fputc('\n', stderr);
      std::fflush(stderr);
    } else {
      std::snprintf(line, sizeof(line), "prepare: %.0f%%, %.1f/%.1f MB, %.1f MB/s, %s tok/s, %s %s",
                    fraction * 100, bytes / 1e6, total_ / 1e6, rate / 1e6,
                    humanCount(elapsed > 0 ? tokens / elapsed : 0).c_str(), final ? "took" : "ETA",
                    final ? formatDuration(elapsed).c_str() : formatDuration(eta).c_str());
      LOOM_INFO(line);
    }
  }

 private:
  bool enabled_;
  bool tty_;
  bool drawn_ = false;
  bool finished_ = false;
  int64_t total_;
  Clock::time_point start_;
  Clock::time_point last_;
};

// ---------------------------------------------------------------------------------------
// Writing.

uint64_t splitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// Whether record `index` belongs to the validation split: a pure function of seed and
/// index, so chunking and threads cannot change it.
bool inValidation(uint64_t seed, int64_t index, double fraction) {
  if (fraction <= 0) return false;
  const uint64_t h = splitMix64(splitMix64(seed) ^ static_cast<uint64_t>(index));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < fraction;
}

struct SplitSink {
  std::unique_ptr<Hdf5DatasetWriter> writer;
  PrepareSplitSummary summary;

  void add(const Piece& p) {
    writer->append(p.ids, p.mask);
    const auto n = static_cast<int64_t>(p.ids.size());
    summary.min_length = summary.samples == 0 ? n : std::min(summary.min_length, n);
    summary.max_length = std::max(summary.max_length, n);
    ++summary.samples;
    summary.tokens += n;
  }

  void finish() {
    writer->finish();
    summary.loss_tokens = writer->numLossTokens();
    summary.mean_length =
        summary.samples > 0 ? static_cast<double>(summary.tokens) / summary.samples : 0.0;
  }
};

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

bool samePath(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  if (std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec)) {
    return std::filesystem::equivalent(a, b, ec);
  }
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}

}  // namespace

// ---------------------------------------------------------------------------------------

PrepareFormat parsePrepareFormat(std::string_view name, const std::string& where) {
  if (name == "alpaca") return PrepareFormat::kAlpaca;
  if (name == "chat") return PrepareFormat::kChat;
  if (name == "text") return PrepareFormat::kText;
  if (name == "template") return PrepareFormat::kTemplate;
  LOOM_INPUT_CHECK(
      false, where << ": unknown format '" << name << "'; expected alpaca, chat, text or template");
  return PrepareFormat::kAlpaca;
}

std::string_view prepareFormatName(PrepareFormat format) {
  switch (format) {
    case PrepareFormat::kAlpaca:
      return "alpaca";
    case PrepareFormat::kChat:
      return "chat";
    case PrepareFormat::kText:
      return "text";
    case PrepareFormat::kTemplate:
      return "template";
  }
  return "?";
}

OverflowPolicy parseOverflowPolicy(std::string_view name, const std::string& where) {
  if (name == "truncate") return OverflowPolicy::kTruncate;
  if (name == "drop") return OverflowPolicy::kDrop;
  LOOM_INPUT_CHECK(false, where << ": unknown value '" << name << "'; expected truncate or drop");
  return OverflowPolicy::kTruncate;
}

std::optional<ChatTemplate> detectChatTemplate(const Tokenizer& tokenizer) {
  if (tokenizer.tokenToId("<|im_start|>")) return ChatTemplate::kQwen;
  if (tokenizer.tokenToId("<|start_header_id|>")) return ChatTemplate::kLlama3;
  return std::nullopt;
}

std::string unescapeTemplate(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      const char n = text[i + 1];
      const char* replacement = n == 'n'    ? "\n"
                                : n == 't'  ? "\t"
                                : n == 'r'  ? "\r"
                                : n == '\\' ? "\\"
                                            : nullptr;
      if (replacement) {
        out += replacement;
        ++i;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

PrepareSummary runPrepare(const PrepareOptions& o) {
  const auto started = Clock::now();
  const bool is_chat = o.format == PrepareFormat::kChat || o.format == PrepareFormat::kAlpaca;
  // Options first: nothing is read or created before they are known to be consistent.
  LOOM_INPUT_CHECK(!o.inputs.empty(), "--input: give at least one input file");
  LOOM_INPUT_CHECK(!o.output.empty(), "--output: the output file is required");
  LOOM_INPUT_CHECK(o.seq_len >= 2, "--seq-len must be at least 2, got " << o.seq_len);
  LOOM_INPUT_CHECK(o.val_fraction >= 0.0 && o.val_fraction < 1.0,
                   "--val-fraction must be in [0, 1), got " << o.val_fraction);
  LOOM_INPUT_CHECK(o.val_fraction == 0.0 || !o.val_output.empty(),
                   "--val-fraction " << o.val_fraction << " needs --val-output FILE");
  LOOM_INPUT_CHECK(o.val_output.empty() || o.val_fraction > 0.0,
                   "--val-output needs --val-fraction F > 0");
  LOOM_INPUT_CHECK(o.threads >= 0, "--threads must be >= 0 (0 = all cores), got " << o.threads);
  const bool is_template = o.format == PrepareFormat::kTemplate;
  LOOM_INPUT_CHECK(!is_template || (!o.prompt_template.empty() && !o.completion_template.empty()),
                   "--format template needs --prompt-template and --completion-template");
  LOOM_INPUT_CHECK(is_template || (o.prompt_template.empty() && o.completion_template.empty()),
                   "--prompt-template / --completion-template apply to --format template only");
  LOOM_INPUT_CHECK(is_chat || !o.chat_template,
                   "--chat-template applies to --format chat and alpaca only");
  std::vector<TemplatePart> prompt;
  std::vector<TemplatePart> completion;
  if (is_template) {
    prompt = parseTemplate(o.prompt_template, "--prompt-template");
    completion = parseTemplate(o.completion_template, "--completion-template");
  }
  if (!o.val_output.empty()) {
    LOOM_INPUT_CHECK(!samePath(o.output, o.val_output),
                     "--val-output must differ from --output (" << o.output.string() << ")");
  }
  std::vector<FileKind> kinds;
  for (const auto& in : o.inputs) {
    LOOM_INPUT_CHECK(
        !samePath(in, o.output) && (o.val_output.empty() || !samePath(in, o.val_output)),
        in.string() << ": an input file cannot be an output file");
    kinds.push_back(fileKind(in, o.format));
  }

  LOOM_INPUT_CHECK(std::filesystem::is_directory(o.tokenizer_dir),
                   "--tokenizer " << o.tokenizer_dir.string()
                                  << ": no such folder (expected a folder with tokenizer.json)");
  const auto load_start = Clock::now();
  const Tokenizer tokenizer = Tokenizer::fromDir(o.tokenizer_dir);
  const double tokenizer_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  const std::optional<int32_t> eos = tokenizer.eosId();
  LOOM_INPUT_CHECK(is_chat || eos, (o.tokenizer_dir / "tokenizer_config.json").string()
                                       << ": no eos_token, which --format "
                                       << prepareFormatName(o.format)
                                       << " appends to every sample");
  ChatTemplate family = ChatTemplate::kQwen;
  if (is_chat) {
    const auto detected = detectChatTemplate(tokenizer);
    LOOM_INPUT_CHECK(o.chat_template || detected,
                     "--tokenizer " << o.tokenizer_dir.string()
                                    << ": cannot tell its chat template (it has neither "
                                       "<|im_start|> nor <|start_header_id|>); pass "
                                       "--chat-template qwen|llama3, or use --format template");
    family = o.chat_template ? *o.chat_template : *detected;
    const char* marker = family == ChatTemplate::kQwen ? "<|im_start|>" : "<|start_header_id|>";
    LOOM_INPUT_CHECK(tokenizer.tokenToId(marker),
                     "--chat-template " << chatTemplateName(family) << ": the tokenizer in "
                                        << o.tokenizer_dir.string() << " has no " << marker
                                        << " token; its chat template is another family's");
  }

  json description = {
      {"format", prepareFormatName(o.format)},
      {"seq_len", o.seq_len},
      {"on_overflow", o.on_overflow == OverflowPolicy::kDrop ? "drop" : "truncate"}};
  if (is_chat) description["chat_template"] = chatTemplateName(family);
  if (is_template) {
    description["prompt"] = templateSource(prompt);
    description["completion"] = templateSource(completion);
  }
  if (!is_chat) description["eos"] = tokenizer.idToToken(*eos);
  if (o.val_fraction > 0) {
    description["val_fraction"] = o.val_fraction;
    description["seed"] = o.seed;
  }

  PrepareSummary summary;
  summary.template_description = description.dump();
  summary.tokenizer_seconds = tokenizer_seconds;
  summary.threads = o.threads > 0
                        ? o.threads
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (const auto& in : o.inputs) {
    summary.input_bytes += static_cast<int64_t>(std::filesystem::file_size(in));
  }

  Hdf5DatasetInfo info;
  info.vocab_size = tokenizer.vocabSize();
  info.tokenizer_hash = tokenizer.contentHash();
  info.eos_id = eos.value_or(-1);
  info.pad_id = tokenizer.padId().value_or(-1);
  for (const auto& in : o.inputs) info.source_files.push_back(in.string());
  info.template_name = summary.template_description;

  // Writers (temporary files until finish()) are destroyed on any error, removing both.
  SplitSink train;
  train.summary.path = o.output;
  train.writer = std::make_unique<Hdf5DatasetWriter>(o.output, info);
  std::optional<SplitSink> val;
  if (o.val_fraction > 0) {
    val.emplace();
    val->summary.path = o.val_output;
    val->writer = std::make_unique<Hdf5DatasetWriter>(o.val_output, info);
  }

  const SampleMaker maker(tokenizer, o, family, eos, prompt, completion);
  RecordReader reader(o.inputs, kinds);
  Progress progress(o.progress, summary.input_bytes);
  std::atomic<int64_t> bytes_done{0};
  std::atomic<int64_t> tokens_done{0};

  struct Chunk {
    std::vector<RawRecord> records;
    std::vector<RecordResult> results;
  };
  auto write = [&](Chunk& chunk) {
    for (auto& r : chunk.results) {
      if (r.error) std::rethrow_exception(r.error);
      ++summary.records;
      switch (r.status) {
        case RecordStatus::kEmpty:
          ++summary.empty;
          break;
        case RecordStatus::kDropped:
          ++summary.dropped;
          break;
        case RecordStatus::kTruncated:
          ++summary.truncated;
          break;
        case RecordStatus::kOk:
          break;
      }
      if (r.pieces.size() > 1) ++summary.split_documents;
      SplitSink& sink = inValidation(o.seed, r.record_index, o.val_fraction) ? *val : train;
      for (const auto& p : r.pieces) sink.add(p);
    }
    chunk.results.clear();
  };

  auto current = std::make_unique<Chunk>();
  std::unique_ptr<Chunk> previous;
  reader.fill(current->records, o.chunk_bytes, o.chunk_records);
  // Declared after the chunks: destroyed (joined) first, since its job reads them.
  WorkerPool pool(summary.threads);
  while (!current->records.empty()) {
    Chunk* chunk = current.get();
    chunk->results.resize(chunk->records.size());
    pool.start(chunk->records.size(), [chunk, &maker, &bytes_done, &tokens_done](size_t i) {
      chunk->results[i] = maker.make(chunk->records[i]);
      int64_t tokens = 0;
      for (const auto& p : chunk->results[i].pieces) tokens += static_cast<int64_t>(p.ids.size());
      tokens_done += tokens;
      bytes_done += chunk->records[i].bytes;
    });
    if (previous) write(*previous);
    auto next = std::make_unique<Chunk>();
    reader.fill(next->records, o.chunk_bytes, o.chunk_records);
    while (!pool.waitFor(std::chrono::milliseconds(200))) {
      progress.update(bytes_done.load(), tokens_done.load());
    }
    progress.update(bytes_done.load(), tokens_done.load());
    chunk->records.clear();
    chunk->records.shrink_to_fit();
    previous = std::move(current);
    current = std::move(next);
  }
  if (previous) write(*previous);
  progress.update(summary.input_bytes, tokens_done.load(), true);

  LOOM_INPUT_CHECK(train.summary.samples > 0,
                   "no samples for " << o.output.string() << ": of " << summary.records
                                     << " records, " << summary.empty << " were empty and "
                                     << summary.dropped << " longer than --seq-len " << o.seq_len
                                     << (val ? " (the rest went to the validation split)" : ""));
  if (val && val->summary.samples == 0) {
    LOOM_WARN("the validation split " << o.val_output.string()
                                      << " has no samples; raise --val-fraction");
  }
  train.finish();
  summary.train = train.summary;
  if (val) {
    val->finish();
    summary.val = val->summary;
  }
  summary.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return summary;
}

std::string formatPrepareSummary(const PrepareSummary& s) {
  std::ostringstream out;
  auto split = [&](const char* name, const PrepareSplitSummary& p) {
    char mean[32];
    std::snprintf(mean, sizeof(mean), "%.1f", p.mean_length);
    out << name << p.path.string() << "\n"
        << "  samples " << p.samples << ", tokens " << p.tokens << ", loss tokens " << p.loss_tokens
        << "\n"
        << "  length min " << p.min_length << " / mean " << mean << " / max " << p.max_length
        << "\n";
  };
  const double secs = std::max(s.seconds, 1e-9);
  const int64_t tokens = s.train.tokens + (s.val ? s.val->tokens : 0);
  char rate[96];
  std::snprintf(rate, sizeof(rate), "%.2f s, %.1f MB/s, %s tokens/s", s.seconds,
                s.input_bytes / secs / 1e6, humanCount(tokens / secs).c_str());
  out << "records " << s.records << ": empty " << s.empty << ", truncated " << s.truncated
      << ", dropped " << s.dropped;
  if (s.split_documents > 0) out << ", split into pieces " << s.split_documents;
  out << "\n";
  split("train ", s.train);
  if (s.val) split("val   ", *s.val);
  char load[48];
  std::snprintf(load, sizeof(load), " (tokenizer loaded in %.2f s)", s.tokenizer_seconds);
  out << "input " << s.input_bytes << " bytes, " << s.threads << " thread(s), " << rate << load
      << "\n";
  return out.str();
}

}  // namespace loom

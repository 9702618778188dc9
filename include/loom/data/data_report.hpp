#pragma once
// The data report: the numbers to check before spending GPU hours on a prepared dataset.
// `trainer prepare` counts them as it writes, prints a short table, stores the report in
// both token files (attribute `prepare_report`, JSON) and writes it with --report FILE.json;
// `trainer inspect --data FILE.h5 --report FILE.json` repeats it from the file.
//
//   records     read (every record of the inputs), kept (made a sample), empty (nothing to
//               learn), truncated, dropped (longer than --seq-len, or nothing left to learn
//               after the cut), duplicates (records whose samples equal an earlier record's
//               exactly: same ids and mask, by a 64-bit hash), not_in_mix (left out by the
//               weights)
//   splits      per file: samples, tokens, loss tokens and their share (as stored: a sample's
//               first token is never a target)
//   lengths     per sample (each copy of a repeated record counted): prompt = tokens that are
//               not targets, answer = targets, sample = both; mean and the nearest-rank
//               percentiles p50, p90, p99 (the value at rank ceil(p * n)), max
//   histogram   sample lengths in ten equal bins over [0, longest sample]
//   sources     per input: path, weight, records, not_in_mix, train / val samples, tokens
//   settings    format, template (description and SHA-256), train_on, seq_len, ...

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace loom {

/// The token files' attribute that holds the report (JSON).
inline constexpr const char* kPrepareReportAttribute = "prepare_report";

class DataReport {
 public:
  enum class Outcome { kKept, kEmpty, kTruncated, kDropped };

  /// `sources` are the input paths, `weights` their mix weights (empty: no mix).
  DataReport(int64_t seq_len, std::vector<std::string> sources, std::vector<double> weights);

  /// One record read from `source`; `hash` is sampleHash() over its samples (ignored unless
  /// kept): a record whose hash was seen before counts as a duplicate.
  void addRecord(size_t source, Outcome outcome, uint64_t hash);
  /// Records of `source` left out of the mix (never read).
  void addNotInMix(size_t source, int64_t count);
  /// One sample written `copies` times to the training split, or once to validation.
  void addSample(size_t source, bool validation, const std::vector<int32_t>& ids,
                 const std::vector<uint8_t>& mask, int64_t copies);

  /// Folds one sample into `hash` (start from 0): ids and mask, order-sensitive.
  static uint64_t sampleHash(uint64_t hash, const std::vector<int32_t>& ids,
                             const std::vector<uint8_t>& mask);

  /// The report as JSON (see above), with `settings` and the split file paths.
  nlohmann::ordered_json toJson(const nlohmann::ordered_json& settings,
                                const std::string& train_path, const std::string& val_path) const;

  /// The short table printed at the end of prepare and by inspect --report.
  static std::string formatTable(const nlohmann::ordered_json& report);

 private:
  struct Split {
    int64_t samples = 0;
    int64_t tokens = 0;
    int64_t loss_tokens = 0;
  };
  struct Source {
    std::string path;
    std::optional<double> weight;
    int64_t records = 0;
    int64_t not_in_mix = 0;
    Split train;
    Split val;
  };
  int64_t seq_len_;
  std::vector<Source> sources_;
  int64_t read_ = 0, kept_ = 0, empty_ = 0, truncated_ = 0, dropped_ = 0, duplicates_ = 0;
  int64_t not_in_mix_ = 0;
  Split train_, val_;
  // Exact counts by length, up to the longest seen: percentiles without keeping every sample.
  std::vector<int64_t> prompt_lengths_, answer_lengths_, sample_lengths_;
  std::unordered_set<uint64_t> seen_;
};

}  // namespace loom

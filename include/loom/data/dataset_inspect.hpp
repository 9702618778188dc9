#pragma once
// `trainer inspect --data FILE.h5`: what a token file holds, for a person to check before
// training: its attributes, length statistics, and a few samples decoded with the parts that
// are not training targets marked, so a wrong prompt layout or mask is visible at a glance.

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "loom/data/hdf5_dataset.hpp"

namespace loom {

class Tokenizer;

/// Attributes and statistics of an opened token file (computed from the index only).
struct DatasetSummary {
  std::filesystem::path path;
  Hdf5DatasetInfo info;
  int64_t file_bytes = 0;
  int64_t min_length = 0;
  int64_t max_length = 0;
  double mean_length = 0.0;
  int64_t p50_length = 0;
  int64_t p90_length = 0;
  int64_t p99_length = 0;
  int64_t empty_samples = 0;    ///< length 0
  int64_t no_loss_samples = 0;  ///< no target token (contributes nothing to the loss)
};

DatasetSummary summarizeDataset(const Hdf5Dataset& dataset);

/// Multi-line text of a summary.
std::string formatDatasetSummary(const DatasetSummary& summary);

/// How the parts of a sample that are not targets (mask 0) are set apart.
enum class MaskStyle {
  kBrackets,  ///< ⟦context⟧ target: plain text, safe in logs and files
  kAnsi,      ///< context dimmed with ANSI escapes, targets plain: for a terminal
};

/// A sample as text: runs of equal mask decoded one at a time, context runs marked per
/// `style`. Without a tokenizer, ids are printed instead (context ids marked the same way).
/// The first token of a sample is shown as context: it is never a target (hdf5_dataset.hpp).
std::string renderSample(const Sample& sample, const Tokenizer* tokenizer, MaskStyle style);

/// What `trainer inspect --data` prints.
struct InspectDataOptions {
  std::filesystem::path data;
  /// Tokenizer to decode with; empty: print ids. A tokenizer whose hash differs from the
  /// file's gets a warning (decoded text would be wrong).
  std::filesystem::path tokenizer_dir;
  std::vector<int64_t> samples;  ///< indices to show; empty: the first `count`
  int64_t count = 3;
  MaskStyle style = MaskStyle::kBrackets;
  /// Also write the file's data report (data_report.hpp) here as JSON; InputError when the
  /// file has none (prepared before reports were stored).
  std::filesystem::path report;
};

/// Opens the file (validating it; InputError for a broken one), prints the summary, the data
/// report's table when the file holds one, and the samples to `out`.
void inspectDataset(const InspectDataOptions& options, std::ostream& out);

}  // namespace loom

#pragma once
// `trainer prepare`: JSONL / JSON array / plain text -> pre-tokenized HDF5 token files
// (format in hdf5_dataset.hpp), one per split, and a data report (data_report.hpp).
//
// Input files. A file whose first non-blank byte is `[` is a JSON array of records (read
// whole); any other `.txt` file is plain text, one document per line (--format text only);
// anything else is JSONL, one record per line, streamed (blank lines are skipped). Records are
// numbered across the files in the order given; errors name `file:line` (JSONL, .txt) or
// `file[index]` (JSON array) and the field. Inputs with weights (`--input a.jsonl:0.7`) are
// mixed in those proportions (mix_plan.hpp).
//
// What each format makes of a record (prompt = context, completion = loss):
//   alpaca, chat, sharegpt
//             a conversation (conversation.hpp: field names, reasoning traces, tool turns),
//             given a default system prompt (--system) when it has none, rendered with the
//             model's own chat template and its loss on the assistant's output
//             (chat_renderer.hpp; --train-on all-assistant|last-assistant|all). No EOS is
//             appended: the turn's closing token is the stop token inference stops on.
//             --thinking auto (default) renders a conversation with Qwen3's enable_thinking on
//             exactly when it carries a reasoning trace (so the empty think block before an
//             answer without one is context, and a trace is target); on / off force it.
//   text      {"text"} (or a line of a .txt file): one document: the tokenizer's
//             post-processor prefix (Llama 3's <|begin_of_text|>), tokens, its suffix, EOS;
//             loss on all. A document longer than seq_len is cut into pieces of seq_len tokens
//             that overlap by one token, so every token but the document's first is a target
//             exactly once (the first token of a sample is never a target, hdf5_dataset.hpp).
//   template  prompt and completion templates with `{Field}` placeholders over the record's
//             fields (`{{` / `}}` are literal braces): prefix + prompt tokens (no loss) +
//             completion tokens + suffix + EOS (loss; --train-on all: loss on the prompt too).
//             Prompt and completion are tokenized separately, as inference sees them.
//
// Empty records (nothing to learn: an empty text, output or completion, or a conversation
// without assistant content) are skipped and counted. A sample longer than seq_len is cut to
// its first seq_len tokens (--on-overflow truncate) or left out (drop); a truncated sample
// with no loss token left is left out and counted as dropped.
//
// Determinism: records are tokenized on several threads but written in input order; a record
// goes to the validation split when a hash of (seed, record number) falls below the
// fraction (per source, with weights). The output is the same whatever the thread count.
// Memory: records are read, tokenized and written in chunks (a few MB at a time), so memory
// stays flat in the size of JSONL / text input; a JSON array file is parsed whole.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loom/data/chat_renderer.hpp"
#include "loom/data/chat_template.hpp"
#include "loom/data/conversation.hpp"

namespace loom {

class Tokenizer;

enum class PrepareFormat { kAlpaca, kChat, kShareGpt, kText, kTemplate };
enum class OverflowPolicy { kTruncate, kDrop };

/// "alpaca|chat|sharegpt|text|template"; InputError naming `where` (e.g. "--format") otherwise.
PrepareFormat parsePrepareFormat(std::string_view name, const std::string& where);
std::string_view prepareFormatName(PrepareFormat format);

/// "truncate|drop"; InputError naming `where` otherwise.
OverflowPolicy parseOverflowPolicy(std::string_view name, const std::string& where);

/// Everything `trainer prepare` takes. Validated by runPrepare (InputError naming the option).
struct PrepareOptions {
  std::filesystem::path tokenizer_dir;        ///< tokenizer.json [+ tokenizer_config.json]
  std::vector<std::filesystem::path> inputs;  ///< read in this order
  /// Empty, or one weight > 0 per input: the inputs are mixed in these proportions.
  std::vector<double> weights;
  int64_t mix_records = 0;  ///< records of the training mix; 0 = the largest without repeats
  PrepareFormat format = PrepareFormat::kAlpaca;
  std::filesystem::path output;  ///< train split (all data without val)
  int64_t seq_len = 2048;        ///< longest sample, in tokens (>= 2)
  OverflowPolicy on_overflow = OverflowPolicy::kTruncate;
  double val_fraction = 0.0;  ///< in [0, 1); > 0 needs val_output
  std::filesystem::path val_output;
  std::string prompt_template;      ///< --format template only
  std::string completion_template;  ///< --format template only
  /// Chat-shaped formats: "auto" (the tokenizer's own template, else a built-in one by its
  /// tokens), "qwen" / "llama3" (built-in), or a Jinja file.
  std::string chat_template = "auto";
  TrainOn train_on = TrainOn::kAllAssistant;
  RecordFields fields;
  std::string system_prompt;     ///< given to conversations without a system message
  std::optional<bool> thinking;  ///< enable_thinking; empty = auto (see above)
  std::filesystem::path report;  ///< also write the data report here (JSON)
  int threads = 0;               ///< tokenizing threads; 0 = all cores
  uint64_t seed = 0;             ///< of the train/validation split
  /// Progress on stderr: a redrawn bar when stderr is a terminal, else a log line every few
  /// seconds.
  bool progress = true;
  int64_t chunk_bytes = 8 << 20;  ///< input read per chunk (memory / parallelism trade)
  int64_t chunk_records = 16384;  ///< records per chunk at most
};

/// Counts of one output file.
struct PrepareSplitSummary {
  std::filesystem::path path;
  int64_t samples = 0;
  int64_t tokens = 0;
  int64_t loss_tokens = 0;  ///< as stored: a sample's first token is never a target
  int64_t min_length = 0;
  int64_t max_length = 0;
  double mean_length = 0.0;
};

/// What runPrepare did.
struct PrepareSummary {
  int64_t records = 0;          ///< records read from the inputs
  int64_t empty = 0;            ///< skipped: nothing to learn
  int64_t truncated = 0;        ///< cut to seq_len and kept
  int64_t dropped = 0;          ///< longer than seq_len and left out
  int64_t split_documents = 0;  ///< text format: documents cut into several pieces
  int64_t duplicates = 0;       ///< records whose samples equal an earlier record's
  int64_t not_in_mix = 0;       ///< records left out by the weights
  int64_t input_bytes = 0;
  int threads = 0;
  double seconds = 0.0;              ///< the whole run
  double tokenizer_seconds = 0.0;    ///< of which loading the tokenizer
  std::string template_description;  ///< stored as the files' `template` attribute
  std::string report_json;           ///< the data report (data_report.hpp)
  PrepareSplitSummary train;
  std::optional<PrepareSplitSummary> val;
};

/// Reads, tokenizes and writes per `options`. Output files appear only when everything
/// succeeded (temporary names + rename); on any error none is left behind.
/// Throws InputError for bad options or input (naming the option, or file:line and field).
PrepareSummary runPrepare(const PrepareOptions& options);

/// A human-readable multi-line summary and the report's table (what `trainer prepare` prints
/// at the end).
std::string formatPrepareSummary(const PrepareSummary& summary);

/// Replaces the escapes `\n`, `\t`, `\r` and `\\` in a template given on a command line,
/// where a shell passes them literally. Other backslashes stay as they are.
std::string unescapeTemplate(std::string_view text);

}  // namespace loom

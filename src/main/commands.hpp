#pragma once
// Subcommands of `trainer`. Each lives in src/main/<name>_command.cpp and registers itself
// on the CLI11 app; main runs the one the user chose. A subcommand appears in --help only
// once it works.

#include <CLI/CLI.hpp>

#include <functional>

namespace loom::cli {

struct Command {
  CLI::App* app = nullptr;   ///< the parsed subcommand
  std::function<int()> run;  ///< returns the process exit code (0, 1, or 2 = bad input)
};

/// `trainer prepare`: JSONL / JSON / text -> pre-tokenized HDF5 (src/main/prepare_command.cpp).
Command addPrepareCommand(CLI::App& parent);

/// `trainer inspect --model DIR [--config FILE] | --data FILE.h5`: a model's architecture,
/// parameters and memory estimate, or a token file's summary and samples
/// (src/main/inspect_command.cpp, src/main/model_inspect.cpp).
Command addInspectCommand(CLI::App& parent);

/// `trainer eval --config FILE`: loss of the configured model (+ finetune.adapter) on data.eval;
/// the last stdout line is one JSON object (src/main/eval_command.cpp).
Command addEvalCommand(CLI::App& parent);

/// `trainer export --config FILE --out DIR [--merge]`: the run's adapter (PEFT), merged or full
/// model (Hugging Face folder), staged and renamed (src/main/export_command.cpp).
Command addExportCommand(CLI::App& parent);

/// `trainer generate --model DIR | --config FILE --prompt TEXT | --prompts FILE.jsonl`: answers
/// with a KV cache, streamed or as JSONL (src/main/generate_command.cpp).
Command addGenerateCommand(CLI::App& parent);

/// `trainer compare --config FILE --prompts FILE.jsonl`: answers before and after fine-tuning
/// scored against references; report.html and report.json (src/main/compare_command.cpp).
Command addCompareCommand(CLI::App& parent);

}  // namespace loom::cli

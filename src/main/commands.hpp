#pragma once
// Subcommands of `trainer`. Each lives in src/main/<name>_command.cpp and registers itself
// on the CLI11 app; main runs the one the user chose. A subcommand appears in --help only
// once it works.

#include <CLI/CLI.hpp>

#include <functional>

namespace loom::cli {

struct Command {
  CLI::App* app = nullptr;        ///< the parsed subcommand
  std::function<int()> run;       ///< returns the process exit code (0, 1, or 2 = bad input)
};

/// `trainer prepare`: JSONL / JSON / text -> pre-tokenized HDF5 (src/main/prepare_command.cpp).
Command addPrepareCommand(CLI::App& parent);

/// `trainer inspect --data FILE.h5`: a token file's summary and samples (src/main/inspect_command.cpp).
Command addInspectCommand(CLI::App& parent);

}  // namespace loom::cli

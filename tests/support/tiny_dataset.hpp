#pragma once
// The tiny token file the end-to-end tests train on (training_runs, the Slurm test): uneven
// samples over a 300-token vocabulary, written with Loom's own HDF5 writer.

#include <filesystem>
#include <string>

namespace loom::testing {

/// `count` samples of uneven length (4..60 tokens) drawn from `seed`; the first third of each
/// is a prompt. `tokenizer_hash`: what the file records as its tokenizer.
void writeTinyDataset(const std::filesystem::path& path, int count, unsigned seed,
                      const std::string& tokenizer_hash = "");

}  // namespace loom::testing

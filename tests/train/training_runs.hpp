#pragma once
// Runs of the training job for the end-to-end tests (label mpi): a tiny Qwen3 model (random
// weights, made by transformers) and a dataset of uneven samples, shared by the tests of one
// executable; a RunSpec becomes a config file and `mpirun -np N trainer --config` runs it;
// what the run wrote (checkpoints, metrics.jsonl) is read back.
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace loom::runs {

namespace fs = std::filesystem;

/// `count` samples of uneven length (4..60 tokens) drawn from `seed`; the first third of each
/// is a prompt. `tokenizer_hash`: what the file records as its tokenizer.
void writeDataset(const fs::path& path, int count, unsigned seed,
                  const std::string& tokenizer_hash = "");

struct Fixture {
  testing::TempDir dir{"loom-train"};
  fs::path model;
  fs::path data;
};

/// Made once per process: the tiny model (make_tiny_model.py) and a 64-sample dataset.
Fixture& fixture();

struct RunSpec {
  std::string name;
  std::vector<double> weights;     // one per rank
  std::vector<int> micro_batches;  // one per rank
  std::string method = "lora";
  int max_steps = 3;
  int checkpoint_every = 0;
  std::string extra;  // more YAML under train:
  double lr = 1e-2;
  std::string balance = "static";
  std::string dtype = "fp32";
  std::vector<std::string> rank_dtypes;  // per rank (empty: model.dtype for all)
  std::string model;                     // model.path (empty: the fixture's)
  std::string data;                      // data.train (empty: the fixture's)
  std::string cluster_extra;             // more YAML under cluster: (before ranks:)
};

fs::path runDir(const std::string& name);
/// The run's config file (written next to the fixture) for `s`.
fs::path writeConfig(const RunSpec& s);
/// Runs `env ENV... mpirun -np <ranks> trainer --config <s>` to the end.
testing::ProcessResult launch(const RunSpec& s, const std::vector<std::string>& env = {});
/// The trainable tensors of a checkpoint folder, by name.
std::map<std::string, torch::Tensor> trainable(const fs::path& checkpoint);
fs::path lastCheckpoint(const std::string& name, int step);
/// max over tensors of max|a - b| / max|b|.
double maxRelativeDiff(const std::map<std::string, torch::Tensor>& a,
                       const std::map<std::string, torch::Tensor>& b);
/// The training-step lines of a run's metrics.jsonl (evaluation lines left out), in order.
/// A line still being written (a run in progress) is left out.
std::vector<nlohmann::json> stepRows(const std::string& name);
/// step -> loss (the last line for a step wins: a resumed run repeats). A skipped step's
/// loss may be NaN (JSON null): left out.
std::map<int64_t, double> losses(const std::string& name);
/// ||a - b|| / ||b|| over all tensors together.
double normRelativeDiff(const std::map<std::string, torch::Tensor>& a,
                        const std::map<std::string, torch::Tensor>& b);

}  // namespace loom::runs

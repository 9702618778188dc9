#include "training_runs.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "loom/model/safetensors.hpp"
#include "support/tiny_dataset.hpp"

namespace loom::runs {

using testing::runProcess;

void writeDataset(const fs::path& path, int count, unsigned seed,
                  const std::string& tokenizer_hash) {
  testing::writeTinyDataset(path, count, seed, tokenizer_hash);
}

Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture();
    fx->model = fx->dir.path() / "model";
    auto made = testing::runPythonScript("make_tiny_model.py",
                                         {fx->model.string(), "qwen3", "--seed", "3"});
    if (made.exit_code != 0) throw std::runtime_error("make_tiny_model.py failed:\n" + made.output);
    fx->data = fx->dir.path() / "train.h5";
    writeDataset(fx->data, 64, 5);
    return fx;
  }();
  return *f;
}

fs::path runDir(const std::string& name) { return fixture().dir.path() / "runs" / name; }

fs::path writeConfig(const RunSpec& s) {
  std::ostringstream y;
  y << "run: {name: " << s.name << ", output_dir: " << runDir(s.name).string() << ", seed: 11}\n"
    << "model: {path: " << (s.model.empty() ? fixture().model.string() : s.model)
    << ", dtype: " << s.dtype << "}\n"
    << "finetune:\n  method: " << s.method
    << "\n  lora: {r: 4, alpha: 8, dropout: 0.0, targets: all-linear}\n"
    << "data: {train: " << (s.data.empty() ? fixture().data.string() : s.data)
    << ", seq_len: 64, packing: true}\n"
    << "train:\n  global_batch_tokens: 320\n  max_steps: " << s.max_steps << "\n  lr: " << s.lr
    << "\n  lr_schedule: cosine\n  warmup_steps: 1\n  weight_decay: 0.01\n"
    << "  max_grad_norm: 1.0\n"
    << s.extra << "checkpoint: {every: " << s.checkpoint_every << ", keep: 5}\n"
    << "cluster:\n  backend: mpi\n  balance: " << s.balance << "\n"
    << s.cluster_extra << "  ranks:\n";
  for (size_t r = 0; r < s.weights.size(); ++r) {
    y << "    - {match: {local_rank: " << r << "}, device: cpu, weight: " << s.weights[r]
      << ", micro_batch: " << s.micro_batches[r]
      << (s.rank_dtypes.empty() ? "" : ", dtype: " + s.rank_dtypes[r]) << "}\n";
  }
  const fs::path file = fixture().dir.path() / (s.name + ".yaml");
  std::ofstream(file) << y.str();
  return file;
}

testing::ProcessResult launch(const RunSpec& s, const std::vector<std::string>& env) {
  std::vector<std::string> argv = {"env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.insert(argv.end(),
              {testing::requireEnv("LOOM_MPIEXEC"), "-np", std::to_string(s.weights.size()),
               "--bind-to", "none", testing::trainerPath(), "--config", writeConfig(s).string()});
  return runProcess(argv);
}

std::map<std::string, torch::Tensor> trainable(const fs::path& checkpoint) {
  SafetensorsFile file((checkpoint / "trainable.safetensors").string());
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : file.names()) out[name] = file.tensor(name).clone();
  return out;
}

fs::path lastCheckpoint(const std::string& name, int step) {
  return runDir(name) / "checkpoints" / ("step-" + std::to_string(step));
}

double maxRelativeDiff(const std::map<std::string, torch::Tensor>& a,
                       const std::map<std::string, torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, ref] : b) {
    const auto it = a.find(name);
    if (it == a.end()) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    const double scale = ref.abs().max().item<double>() + 1e-12;
    worst = std::max(worst, (it->second - ref).abs().max().item<double>() / scale);
  }
  return worst;
}

std::vector<nlohmann::json> stepRows(const std::string& name) {
  std::ifstream in(runDir(name) / "metrics.jsonl");
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("skipped")) rows.push_back(std::move(j));
  }
  return rows;
}

std::map<int64_t, double> losses(const std::string& name) {
  std::map<int64_t, double> out;
  for (const auto& j : stepRows(name)) {
    if (j["loss"].is_number()) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

double normRelativeDiff(const std::map<std::string, torch::Tensor>& a,
                        const std::map<std::string, torch::Tensor>& b) {
  double num = 0, den = 0;
  for (const auto& [name, ref] : b) {
    num += (a.at(name).to(torch::kDouble) - ref.to(torch::kDouble)).pow(2).sum().item<double>();
    den += ref.to(torch::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace loom::runs

// `trainer eval`: the model of a run config (with its adapter, if finetune.adapter is set)
// evaluated on data.eval, single process. Progress goes to stderr; the last stdout line is one
// JSON object: {"loss": mean over loss tokens, "tokens": loss tokens, "perplexity", "samples",
// ...}. The evaluation itself is loom::evaluateDataset (src/train/evaluate.cpp).
#include <torch/cuda.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "device_flags.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/log.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/planner.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/train/evaluate.hpp"
#include "loom/train/model_setup.hpp"

namespace loom::cli {

namespace {

struct EvalCli {
  std::string config;
  std::vector<std::string> overrides;
  std::string device = "auto";
  std::string dtype;
  int64_t batch_size = 4;
};

/// Rewrites an InputError from reading data.eval so that it names the key and its line.
[[noreturn]] void rethrowForEvalData(const Config& config, const InputError& e) {
  throw InputError("data.eval (" + config.where("data.eval") + "): " + e.what());
}

int runEval(const EvalCli& o) {
  const Config config = loadConfig(o.config, o.overrides);
  LOOM_INPUT_CHECK(config.data.eval.has_value(),
                   "data.eval is not set in " << config.source_file
                                              << ": `trainer eval` evaluates the data.eval file "
                                                 "(set it there or pass --set data.eval=FILE.h5)");
  LOOM_INPUT_CHECK(o.batch_size > 0, "--batch-size must be > 0, got " << o.batch_size);
  const c10::Device device = parseDeviceFlag(o.device);
  const at::ScalarType dtype = parseDtypeFlag(o.dtype, scalarType(config.model.dtype));
  // Every path is checked before the weights are read.
  checkModelFolder(config);
  checkAdapterFolder(config);
  const HfConfig hf = loadHfConfig(config.model.path);

  std::optional<Hdf5Dataset> dataset;
  std::optional<BatchPlanner> planner;
  try {
    dataset.emplace(*config.data.eval, hf.vocab_size);
    planner.emplace(BatchPlanner::fromDataset(
        *dataset, evalPlannerConfig(config.data.seq_len, config.data.packing)));
  } catch (const InputError& e) {
    rethrowForEvalData(config, e);
  }
  LOOM_INFO("eval: " << *config.data.eval << ": " << dataset->numSamples() << " samples, "
                     << dataset->numTokens() << " tokens; seq_len " << config.data.seq_len
                     << (config.data.packing ? ", packed" : ", one sample per row"));

  const auto start = std::chrono::steady_clock::now();
  ModelSetup setup = setupModel(config, device, dtype);
  LOOM_INFO("eval: model " << config.model.path << " (" << hf.model_type << ", " << dtypeName(dtype)
                           << ", " << device.str() << ")"
                           << (config.finetune.adapter ? " + adapter " + *config.finetune.adapter
                                                       : std::string()));

  EvalOptions options;
  options.micro_batch = o.batch_size;
  const auto& info = dataset->info();
  options.pad_id =
      static_cast<int32_t>(info.pad_id >= 0 ? info.pad_id : std::max<int64_t>(info.eos_id, 0));
  const auto eval_start = std::chrono::steady_clock::now();
  auto last_report = eval_start;
  options.progress = [&](const EvalProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (p.samples_done < p.samples_total && now - last_report < std::chrono::seconds(5)) return;
    last_report = now;
    const double seconds = std::chrono::duration<double>(now - eval_start).count();
    const double rate = seconds > 0 ? static_cast<double>(p.tokens_done) / seconds : 0.0;
    const double done = static_cast<double>(p.samples_done) / static_cast<double>(p.samples_total);
    char line[256];
    std::snprintf(line, sizeof(line),
                  "eval: %lld/%lld samples (%.0f%%), loss %.4f, %.0f tokens/s, ETA %.0fs",
                  static_cast<long long>(p.samples_done), static_cast<long long>(p.samples_total),
                  100.0 * done, p.loss_tokens ? p.loss_sum / p.loss_tokens : 0.0, rate,
                  done > 0 ? seconds * (1.0 - done) / done : 0.0);
    LOOM_INFO(line);
  };
  EvalResult result;
  try {
    result =
        evaluateSamples(*setup.model, *dataset, *planner, evalShare(*planner, {1.0}, 0), options);
  } catch (const InputError& e) {
    rethrowForEvalData(config, e);  // a sample that fails its checks while being read
  }
  LOOM_INPUT_CHECK(result.loss_tokens > 0,
                   "data.eval (" << config.where("data.eval") << "): " << *config.data.eval
                                 << " has no loss tokens within seq_len " << config.data.seq_len
                                 << "; nothing to evaluate");
  if (result.truncated > 0) {
    LOOM_WARN("eval: " << result.truncated << " sample(s) longer than data.seq_len "
                       << config.data.seq_len << " were cut to their first tokens");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::ordered_json j;
  j["loss"] = result.loss();
  j["tokens"] = result.loss_tokens;
  j["perplexity"] = result.perplexity();
  j["samples"] = result.samples;
  j["loss_sum"] = result.loss_sum;
  j["input_tokens"] = result.tokens;
  j["truncated"] = result.truncated;
  j["data"] = *config.data.eval;
  j["model"] = config.model.path;
  j["adapter"] = config.finetune.adapter ? nlohmann::ordered_json(*config.finetune.adapter)
                                         : nlohmann::ordered_json(nullptr);
  j["method"] = toString(config.finetune.method);
  j["dtype"] = dtypeName(dtype);
  j["device"] = device.str();
  j["seq_len"] = config.data.seq_len;
  j["seconds"] = seconds;
  std::cout << j.dump() << std::endl;
  return kExitOk;
}

}  // namespace

Command addEvalCommand(CLI::App& parent) {
  auto o = std::make_shared<EvalCli>();
  Command c;
  CLI::App* app = parent.add_subcommand(
      "eval", "evaluate the configured model (and finetune.adapter) on data.eval");
  c.app = app;
  app->add_option("--config,-c", o->config, "run configuration (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--set", o->overrides,
                  "override a config key, validated like the file: --set data.eval=x.h5 "
                  "(repeatable)")
      ->allow_extra_args(false);
  app->add_option("--device", o->device, "auto|cpu|cuda|cuda:N (auto: cuda:0 when visible)")
      ->capture_default_str();
  app->add_option("--dtype", o->dtype, "bf16|fp16|fp32 (default: model.dtype)");
  app->add_option("--batch-size", o->batch_size, "rows of data.seq_len tokens per forward pass")
      ->capture_default_str();
  app->footer(
      "Samples of data.eval are packed into rows of data.seq_len (as training packs them; longer "
      "samples are cut), no shuffle, each once. The last stdout line is one JSON object: loss "
      "(mean over loss tokens), tokens (loss tokens), perplexity, samples, loss_sum, "
      "input_tokens, truncated, ...\n"
      "Exit codes: 0 ok, 1 failure, 2 bad input (the message names the config key or file).");
  c.run = [o] { return runEval(*o); };
  return c;
}

}  // namespace loom::cli

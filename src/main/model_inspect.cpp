#include "model_inspect.hpp"

#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "loom/comm/rank_settings.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/memory.hpp"
#include "loom/model/safetensors.hpp"
#include "loom/train/model_setup.hpp"

namespace loom::cli {

namespace {

namespace fs = std::filesystem;

std::string joined(const std::vector<std::string>& names) {
  std::ostringstream s;
  for (size_t i = 0; i < names.size(); ++i) s << (i ? ", " : "") << names[i];
  return s.str();
}

/// The LoRA targets as a reader wants them: all-linear spelled out.
std::string targetsText(const LoraSpec& spec) {
  if (!spec.target_regex.empty()) return "regex " + spec.target_regex;
  for (const auto& t : spec.target_modules) {
    if (t == "all-linear") return "all-linear (" + joined(loraModuleNames()) + ")";
  }
  return joined(spec.target_modules);
}

/// The run's memory per kind of rank: the defaults, then each cluster.ranks rule applied over
/// them (the ranks a rule matches are known only at launch; `--dry-run` shows each real rank).
void printRunMemory(const Config& config, const HfConfig& hf) {
  RankSettings base;
  base.dtype = config.model.dtype;
  base.gradient_checkpointing = config.model.gradient_checkpointing;
  base.device = "cuda";
  std::vector<std::pair<std::string, RankSettings>> kinds{{"defaults", base}};
  for (size_t i = 0; i < config.cluster.ranks.size(); ++i) {
    const RankRule& rule = config.cluster.ranks[i];
    RankSettings s = base;
    if (rule.device) s.device = *rule.device;
    if (rule.micro_batch) s.micro_batch = *rule.micro_batch;
    if (rule.dtype) s.dtype = *rule.dtype;
    if (rule.loss_chunk_tokens) s.loss_chunk_tokens = *rule.loss_chunk_tokens;
    if (rule.gradient_checkpointing) s.gradient_checkpointing = *rule.gradient_checkpointing;
    if (s.device == "cpu") s.dtype = DType::kFP32;  // the CPU computes in fp32
    std::ostringstream label;
    label << "cluster.ranks[" << i << "]";
    if (rule.match_gpu) label << " (gpu ~ " << *rule.match_gpu << ")";
    if (rule.match_host) label << " (host " << *rule.match_host << ")";
    if (rule.match_local_rank) label << " (local_rank " << *rule.match_local_rank << ")";
    kinds.emplace_back(label.str(), s);
  }
  std::cout << "memory per rank (tensors at the peak of a step; a CUDA rank adds its context; "
               "--dry-run compares each rank with its device's free memory):\n";
  for (const auto& [label, s] : kinds) {
    const MemoryPlan plan = memoryPlan(config, s);
    std::cout << "  " << label << ": " << toString(s.dtype) << ", micro_batch " << s.micro_batch
              << ": " << describeRankMemory(estimateRankMemory(hf, plan), plan) << "\n";
  }
  std::cout << std::flush;
}

}  // namespace

int inspectModel(const std::string& dir, const std::string& config_path) {
  std::optional<Config> config;
  if (!config_path.empty()) config = loadConfig(config_path);
  LOOM_INPUT_CHECK(!dir.empty() || config,
                   "--model DIR is required (or --config FILE, whose model.path is used)");

  fs::path model_dir = dir;
  std::string where = "--model " + dir;
  if (dir.empty()) {
    checkModelFolder(*config);
    model_dir = config->model.path;
    where = "model.path (" + config->where("model.path") + ")";
  }
  LOOM_INPUT_CHECK(fs::is_regular_file(model_dir / "config.json"),
                   where << ": '" << model_dir.string()
                         << "' has no config.json; expected a Hugging Face model folder");
  const HfConfig hf = loadHfConfig(model_dir);
  // The weights, when the folder has any, are mapped and their headers checked (not read):
  // a truncated or damaged file, or GPTQ/AWQ weights, are refused here rather than at the
  // start of training. A folder with config.json alone is still counted (e.g. before a
  // download, to see the memory a run needs).
  bool has_weights = false;
  for (const auto& entry : fs::directory_iterator(model_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 12 && (name.rfind(".safetensors") == name.size() - 12 ||
                             name.find(".safetensors.index.json") != std::string::npos)) {
      has_weights = true;
    }
  }
  std::string weights_note = "none found (counts from config.json only)";
  if (has_weights) {
    const SafetensorsCheckpoint weights = SafetensorsCheckpoint::open(model_dir);
    refuseQuantizedWeights(weights);
    weights_note = std::to_string(weights.names().size()) + " tensors, headers and sizes checked";
  }

  std::optional<LoraSpec> lora;
  std::ostringstream method;
  if (!config) {
    lora = LoraSpec{};
    method << "LoRA r=" << lora->rank << " alpha=" << lora->alpha
           << " (default; --config FILE shows the run's method)";
  } else if (config->finetune.method == FinetuneMethod::kFull) {
    method << "full (finetune.method in " << config_path << ")";
  } else if (config->finetune.adapter) {
    checkAdapterFolder(*config);
    lora = loadAdapterConfig(*config->finetune.adapter);
    method << toString(config->finetune.method) << ", adapter " << *config->finetune.adapter;
  } else {
    lora = loraSpecFromConfig(config->finetune.lora);
    lora->validate("finetune.lora (" + config->where("finetune.lora") + ")");
    method << toString(config->finetune.method) << " (finetune.lora in " << config_path << ")";
  }

  std::cout << "model: " << model_dir.string()
            << (hf.quantization == "bnb-nf4" ? " (bitsandbytes 4-bit NF4 checkpoint)" : "") << "\n";
  std::cout << "weights: " << weights_note << "\n";
  std::cout << "method: " << method.str() << "\n";
  if (lora) std::cout << "LoRA targets: " << targetsText(*lora) << "\n";
  if (config && config->finetune.method == FinetuneMethod::kQLora) {
    std::cout << "note: qlora keeps the decoder layers' projections in NF4 (about 0.52 bytes a "
                 "weight); the per-dtype table below counts a 16/32-bit base, the per-rank "
                 "memory at the end the 4-bit one\n";
  }
  if (config)
    std::cout << "configured dtype: " << toString(config->model.dtype) << " (model.dtype)\n";
  std::cout << describeModel(hf, lora ? &*lora : nullptr) << std::flush;
  if (config) printRunMemory(*config, hf);
  return kExitOk;
}

}  // namespace loom::cli

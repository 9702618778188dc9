#include "loom/train/model_setup.hpp"

#include <torch/nn/module.h>

#include <sstream>
#include <string>

#include "loom/comm/device.hpp"
#include "loom/core/error.hpp"
#include "loom/core/log.hpp"
#include "loom/core/strings.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"

namespace loom {

namespace fs = std::filesystem;

at::ScalarType scalarType(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return at::kBFloat16;
    case DType::kFP16:
      return at::kHalf;
    case DType::kFP32:
      return at::kFloat;
  }
  return at::kFloat;
}

LoraSpec loraSpecFromConfig(const LoraConfig& lora) {
  LoraSpec spec;
  spec.rank = lora.r;
  spec.alpha = lora.alpha;
  spec.dropout = lora.dropout;
  spec.use_rslora = lora.rslora;
  spec.target_modules = lora.targets;
  if (spec.target_modules.empty()) spec.target_modules = {"all-linear"};
  return spec;
}

void checkModelFolder(const Config& config) {
  const fs::path dir = config.model.path;
  const std::string where = "model.path (" + config.where("model.path") + ")";
  LOOM_INPUT_CHECK(fs::is_directory(dir), where << ": '" << dir.string()
                                                << "' is not a folder; expected a Hugging Face "
                                                   "model folder (config.json + *.safetensors)");
  LOOM_INPUT_CHECK(fs::is_regular_file(dir / "config.json"),
                   where << ": '" << dir.string()
                         << "' has no config.json; expected a Hugging Face model folder");
}

void checkAdapterFolder(const Config& config) {
  if (!config.finetune.adapter) return;
  const fs::path dir = *config.finetune.adapter;
  const std::string where = "finetune.adapter (" + config.where("finetune.adapter") + ")";
  LOOM_INPUT_CHECK(fs::is_directory(dir),
                   where << ": '" << dir.string()
                         << "' is not a folder; expected a PEFT adapter folder "
                            "(adapter_config.json + adapter_model.safetensors)");
  LOOM_INPUT_CHECK(fs::is_regular_file(dir / "adapter_config.json"),
                   where << ": '" << dir.string()
                         << "' has no adapter_config.json; expected a PEFT adapter folder "
                            "(adapter_config.json + adapter_model.safetensors)");
  LOOM_INPUT_CHECK(fs::is_regular_file(dir / "adapter_model.safetensors"),
                   where << ": '" << dir.string()
                         << "' has no adapter_model.safetensors (Loom does not read pickled "
                            "adapter_model.bin)");
}

ModelSetup setupModel(const Config& config, c10::Device device, at::ScalarType dtype) {
  checkModelFolder(config);
  checkAdapterFolder(config);
  const bool qlora = config.finetune.method == FinetuneMethod::kQLora;
  const HfConfig hf = loadHfConfig(config.model.path);
  if (!qlora && hf.quantization == "bnb-nf4") {
    LOOM_WARN("model.path (" << config.where("model.path") << "): " << config.model.path
                             << " is a bitsandbytes 4-bit checkpoint; finetune.method "
                             << toString(config.finetune.method)
                             << " trains on its dequantized weights (finetune.method: qlora "
                                "keeps them in 4 bits)");
  }

  DecoderOptions options;
  options.dtype = dtype;
  options.device = device;
  options.activation_checkpointing = config.model.gradient_checkpointing;
  options.nf4_base = qlora;

  ModelSetup setup;
  try {
    setup.model = loadModel(config.model.path, options);
  } catch (const InputError& e) {
    // The files' errors name the file; the user also needs the key that led there.
    throw InputError("model.path (" + config.where("model.path") + "): " + e.what());
  }
  if (config.finetune.method == FinetuneMethod::kFull) {
    enableFullFinetune(*setup.model);
  } else if (config.finetune.adapter) {
    setup.spec = loadAdapter(*setup.model, *config.finetune.adapter);
    setup.lora = true;
    // The adapter's own adapter_config.json defines its LoRA; say so when the config asks
    // for a different one explicitly.
    const LoraConfig& asked = config.finetune.lora;
    const bool differs = asked.r != setup.spec.rank || asked.alpha != setup.spec.alpha ||
                         asked.rslora != setup.spec.use_rslora;
    for (const auto& [key, place] : config.locations) {
      if (differs && startsWith(key, "finetune.lora.")) {
        LOOM_WARN(place << ": finetune.lora (r=" << asked.r << " alpha=" << asked.alpha
                        << ") is ignored: the adapter of finetune.adapter brings its own, r="
                        << setup.spec.rank << " alpha=" << setup.spec.alpha
                        << (setup.spec.use_rslora ? " (rsLoRA)" : "") << ", in "
                        << *config.finetune.adapter << "/adapter_config.json");
        break;
      }
    }
  } else {
    setup.spec = loraSpecFromConfig(config.finetune.lora);
    setup.spec.validate("finetune.lora (" + config.where("finetune.lora") + ")");
    applyLora(*setup.model, setup.spec);
    setup.lora = true;
  }
  for (auto& p : setup.model->parameters(/*recurse=*/true)) {
    if (p.requires_grad()) setup.trainable.push_back(p);
  }
  return setup;
}

}  // namespace loom

namespace loom {

MemoryPlan memoryPlan(const Config& config, const RankSettings& settings) {
  MemoryPlan plan;
  plan.dtype = scalarType(settings.dtype);
  plan.nf4_base = config.finetune.method == FinetuneMethod::kQLora;
  if (config.finetune.method != FinetuneMethod::kFull) {
    plan.lora = config.finetune.adapter ? loadAdapterConfig(*config.finetune.adapter)
                                        : loraSpecFromConfig(config.finetune.lora);
  }
  plan.micro_batch = settings.micro_batch;
  plan.seq_len = config.data.seq_len;
  plan.gradient_checkpointing = settings.gradient_checkpointing;
  plan.loss_chunk_tokens = settings.loss_chunk_tokens;
  plan.packed = config.data.packing;
  plan.cuda = settings.onCuda();
  return plan;
}

WorldMemory describeWorldMemory(const Config& config, const std::vector<RankSettings>& ranks,
                                const std::vector<int64_t>& free_bytes) {
  const HfConfig hf = loadHfConfig(config.model.path);
  WorldMemory out;
  auto& lines = out.lines;
  auto& warnings = out.warnings;
  for (size_t i = 0; i < ranks.size(); ++i) {
    const RankSettings& r = ranks[i];
    const MemoryPlan plan = memoryPlan(config, r);
    const MemoryEstimateBytes m = estimateRankMemory(hf, plan);
    const int64_t free = i < free_bytes.size() ? free_bytes[i] : 0;
    out.estimates.push_back(m);
    out.free_bytes.push_back(free);
    std::ostringstream line;
    line << "rank " << r.rank << " (" << r.device << (r.gpu_name.empty() ? "" : " " + r.gpu_name)
         << "): " << describeRankMemory(m, plan);
    if (free > 0) line << "; free on the device " << gibText(static_cast<uint64_t>(free));
    lines.push_back(line.str());
    warnings.emplace_back();
    if (free > 0 && m.total() > static_cast<uint64_t>(free)) {
      std::ostringstream w;
      w << "rank " << r.rank << " on " << r.host << " (" << r.device
        << (r.gpu_name.empty() ? "" : ", " + r.gpu_name) << ") needs about " << gibText(m.total())
        << " but its device has " << gibText(static_cast<uint64_t>(free))
        << " free: lower its micro_batch (" << r.micro_batch << ") or data.seq_len ("
        << config.data.seq_len << ")"
        << (r.gradient_checkpointing ? "" : ", turn on gradient_checkpointing")
        << ", lower loss_chunk_tokens (" << r.loss_chunk_tokens << ")"
        << (plan.nf4_base ? "" : ", or use finetune.method: qlora")
        << " (cluster.ranks rules set these per rank)";
      warnings.back() = w.str();
    }
  }
  return out;
}

WorldMemory gatherWorldMemory(const World& world, const Config& config,
                              const std::vector<RankSettings>& ranks) {
  const RankSettings& me = ranks[world.rank()];
  const int64_t free = me.onCuda() ? cudaFreeMemoryBytes(std::stoi(me.device.substr(5))) : 0;
  std::vector<int64_t> free_bytes;
  for (const auto& f : world.allGather(std::to_string(free))) free_bytes.push_back(std::stoll(f));
  return describeWorldMemory(config, ranks, free_bytes);
}

}  // namespace loom

#include "model_inspect.hpp"

#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
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

  std::cout << "model: " << model_dir.string() << "\n";
  std::cout << "method: " << method.str() << "\n";
  if (lora) std::cout << "LoRA targets: " << targetsText(*lora) << "\n";
  if (config && config->finetune.method == FinetuneMethod::kQLora) {
    std::cout << "note: qlora is counted as LoRA over a base in the dtypes below; this build "
                 "has no 4-bit base\n";
  }
  if (config)
    std::cout << "configured dtype: " << toString(config->model.dtype) << " (model.dtype)\n";
  std::cout << describeModel(hf, lora ? &*lora : nullptr) << std::flush;
  return kExitOk;
}

}  // namespace loom::cli

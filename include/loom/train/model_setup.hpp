#pragma once
// From a run Config to a model ready to train or evaluate: the base checkpoint of model.path
// loaded on a device in a dtype, then the configured fine-tuning applied
//   finetune.method lora, finetune.adapter set    -> the PEFT adapter loaded (its own r,
//                                                     alpha, targets and dropout)
//   finetune.method lora, no adapter              -> fresh LoRA from finetune.lora
//   finetune.method qlora                         -> as lora, over a frozen NF4 base: the
//                                                     decoder layers' projections quantized
//                                                     at load (or read as they are from a
//                                                     bitsandbytes 4-bit checkpoint)
//   finetune.method full                          -> every parameter trainable
// Paths are checked before anything heavy is loaded, and a bad one is an InputError naming
// the config key and where it was set (DESIGN invariant 6).

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "loom/comm/rank_settings.hpp"
#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/memory.hpp"

namespace loom {

/// A loaded model and what is trained in it.
struct ModelSetup {
  std::shared_ptr<CausalLm> model;
  LoraSpec spec;  ///< the LoRA in the model (meaningful when `lora`)
  bool lora = false;
  /// The parameters the optimizer updates: the LoRA A/B weights, or every parameter.
  std::vector<at::Tensor> trainable;
};

/// at::ScalarType of a config dtype.
at::ScalarType scalarType(DType dtype);

/// The LoRA that finetune.lora describes (targets already expanded by the config).
LoraSpec loraSpecFromConfig(const LoraConfig& lora);

/// Checks that model.path is a folder with a config.json; InputError naming model.path.
void checkModelFolder(const Config& config);

/// Checks that finetune.adapter (when set) is a folder with adapter_config.json and
/// adapter_model.safetensors; InputError naming finetune.adapter.
void checkAdapterFolder(const Config& config);

/// The memory plan of a rank with `settings` in the run `config` (finetune.adapter's own LoRA
/// when one is set).
MemoryPlan memoryPlan(const Config& config, const RankSettings& settings);

/// Every rank's memory estimate, in rank order.
struct WorldMemory {
  std::vector<MemoryEstimateBytes> estimates;
  std::vector<int64_t> free_bytes;  ///< free device memory; 0: unknown (a CPU rank)
  std::vector<std::string> lines;   ///< one readable line a rank
  /// Empty where the estimate fits; else names the rank, the numbers and what to change.
  std::vector<std::string> warnings;
};

/// The estimates of `ranks` against `free_bytes[rank]`.
WorldMemory describeWorldMemory(const Config& config, const std::vector<RankSettings>& ranks,
                                const std::vector<int64_t>& free_bytes);

/// Collective (every rank must call): gathers each rank's free device memory (its CUDA
/// device's, 0 on the CPU) and describes the world.
WorldMemory gatherWorldMemory(const World& world, const Config& config,
                              const std::vector<RankSettings>& ranks);

/// Loads model.path on `device` in `dtype` and applies the configured fine-tuning (see the
/// top of this file).
/// InputError naming the key for a bad path, and the file and tensor for a bad checkpoint.
ModelSetup setupModel(const Config& config, c10::Device device, at::ScalarType dtype);

}  // namespace loom

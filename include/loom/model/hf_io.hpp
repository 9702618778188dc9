#pragma once
// Hugging Face model folders in and out: config.json + safetensors (single or sharded) +
// tokenizer files; and the numbers `trainer inspect` prints.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "loom/model/decoder.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/safetensors.hpp"

namespace loom {

/// transformers' default max_shard_size ("5GB" = 5e9 bytes).
inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000ull;

/// at::ScalarType of a config dtype name ("float32", "bfloat16", "float16"); InputError
/// naming `source` otherwise.
at::ScalarType parseDtypeName(const std::string& name, const std::string& source);
/// "float32" | "bfloat16" | "float16".
std::string dtypeName(at::ScalarType dtype);

/// Copies the checkpoint's tensors into the model's base parameters by name (converting dtype
/// and device). InputError naming the checkpoint and tensor when a parameter is missing, a
/// tensor is left over, a shape differs or a dtype is not floating. A tied model accepts (and
/// ignores) an `lm_head.weight`; rotary `inv_freq` buffers of old checkpoints are ignored.
void loadWeights(CausalLm& model, const SafetensorsCheckpoint& checkpoint);

/// InputError naming the checkpoint and the tensor when it holds GPTQ/AWQ-quantized weights
/// (qweight, qzeros, g_idx), which Loom cannot read.
void refuseQuantizedWeights(const SafetensorsCheckpoint& checkpoint);

/// Reads `dir/config.json` and the safetensors weights of `dir` into a new model.
std::shared_ptr<CausalLm> loadModel(const std::filesystem::path& dir,
                                    const DecoderOptions& options);

/// The base weights under Hugging Face names, converted to `dtype` (lm_head omitted when tied,
/// as save_pretrained does). Error when LoRA branches are present: merge them first.
NamedTensors fullModelState(CausalLm& model, at::ScalarType dtype);

/// Writes a Hugging Face folder that AutoModelForCausalLM.from_pretrained loads: weights in
/// `dtype`, sharded above `max_shard_bytes`; config.json copied from `source_dir` (when it has
/// one) with its dtype updated, else written from the model's HfConfig; tokenizer and
/// generation files copied from `source_dir`. config.json is written last.
void saveFullModel(CausalLm& model, const std::filesystem::path& out_dir,
                   const std::filesystem::path& source_dir, at::ScalarType dtype,
                   uint64_t max_shard_bytes = kDefaultMaxShardBytes);

/// Merges the LoRA branches into the base weights and saves the result as a full model.
void saveMergedModel(CausalLm& model, const std::filesystem::path& out_dir,
                     const std::filesystem::path& source_dir, at::ScalarType dtype,
                     uint64_t max_shard_bytes = kDefaultMaxShardBytes);

/// config.json text for `config` (used when there is no source config to copy).
std::string hfConfigJson(const HfConfig& config);

/// Parameter counts of an architecture, computed from the config alone (nothing allocated).
struct ParameterCounts {
  int64_t embedding = 0;  ///< embed_tokens
  int64_t attention = 0;  ///< q/k/v/o (+ biases, q/k norms), all layers
  int64_t mlp = 0;        ///< gate/up/down, all layers
  int64_t norms = 0;      ///< layer norms and the final norm
  int64_t lm_head = 0;    ///< 0 when tied
  int64_t total = 0;
  int64_t lora = 0;       ///< LoRA A and B, when a LoRA spec is given
  int64_t trainable = 0;  ///< LoRA: lora; full: total
};

/// Counts parameters; `lora` null means full-parameter fine-tuning.
ParameterCounts countParameters(const HfConfig& config, const LoraSpec* lora);

/// Bytes needed by one dtype choice (activations excluded).
struct MemoryEstimate {
  std::string dtype;
  uint64_t weights = 0;    ///< base weights in `dtype` + LoRA weights in fp32
  uint64_t gradients = 0;  ///< one gradient per trainable parameter, in its dtype
  uint64_t optimizer =
      0;  ///< AdamW: two fp32 moments; full mode below fp32 adds an fp32 master copy
  uint64_t total() const { return weights + gradients + optimizer; }
};

/// Memory estimates for float32, bfloat16 and float16.
std::vector<MemoryEstimate> estimateMemory(const HfConfig& config, const LoraSpec* lora);

/// The multi-line report of `trainer inspect`: architecture, parameter counts, trainable
/// parameters for the method and memory per dtype.
std::string describeModel(const HfConfig& config, const LoraSpec* lora);

}  // namespace loom

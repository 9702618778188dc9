#pragma once
// LoRA (https://arxiv.org/abs/2106.09685) as PEFT implements it, and the PEFT adapter layout:
// `adapter_config.json` + `adapter_model.safetensors` with keys
// `base_model.model.<module path>.lora_A.weight` / `.lora_B.weight`.
// A [r, in] starts kaiming-uniform(a=sqrt(5)), B [out, r] zeros; y += scaling * B A dropout(x)
// with scaling alpha/r, or alpha/sqrt(r) for rsLoRA. lm_head is never a target.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "loom/model/safetensors.hpp"

namespace loom {

class CausalLm;

/// The projections LoRA may target, in the order of a decoder layer.
inline const std::vector<std::string>& loraModuleNames() {
  static const std::vector<std::string> names{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};
  return names;
}

/// A LoRA configuration.
struct LoraSpec {
  int64_t rank = 16;
  double alpha = 32.0;
  double dropout = 0.0;
  bool use_rslora = false;
  /// Short names (q_proj ...), "all-linear", or module paths as PEFT writes them
  /// ("model.layers.0.self_attn.q_proj"); a path matches itself or any path ending in
  /// "." + it, PEFT's rule.
  std::vector<std::string> target_modules{"all-linear"};
  /// When not empty: a regular expression a module path must match whole (PEFT's
  /// `target_modules` given as one string); replaces target_modules.
  std::string target_regex;
  at::ScalarType dtype = at::kFloat;  ///< adapter weights' dtype (PEFT keeps them in fp32)

  /// alpha / r, or alpha / sqrt(r) with rsLoRA.
  double scaling() const;
  /// Whether the projection at `module_path` is a target.
  bool targets(const std::string& module_path) const;
  /// Checks rank, dropout and target names; InputError naming `source`.
  void validate(const std::string& source) const;
};

/// Adds a LoRA branch to every targeted projection and freezes every other parameter.
/// InputError when no projection matches.
void applyLora(CausalLm& model, const LoraSpec& spec);

/// LoRA trained in a 16-bit compute `dtype` (bf16/fp16) with fp32 adapter weights: every
/// branch without dropout gets 16-bit copies of A and B (Projection::makeLoraComputeCopies),
/// which the forward uses instead of casting A and B in every micro-batch. Returns them by
/// the name of the fp32 parameter each copies (named_parameters' key). The caller trains the
/// copies with those fp32 parameters as their masters (Optimizer's `masters`), so the
/// adapter's values, its file and checkpoints stay fp32, and the copies take the masters'
/// values after each step. Nothing when the adapter weights already are in `dtype`.
std::map<std::string, at::Tensor> makeLoraComputeCopies(CausalLm& model, at::ScalarType dtype);

/// Full-parameter fine-tuning: every parameter of the model trainable.
void enableFullFinetune(CausalLm& model);

/// The adapter weights under PEFT's keys, in module order.
NamedTensors loraState(CausalLm& model);

/// Writes `dir/adapter_config.json` and `dir/adapter_model.safetensors` (atomically, config
/// last) so that `PeftModel.from_pretrained(base, dir)` loads them.
void saveAdapter(CausalLm& model, const LoraSpec& spec, const std::filesystem::path& dir,
                 const std::string& base_model_name_or_path);

/// Parses `dir/adapter_config.json`; InputError for a non-LoRA adapter or a feature Loom does
/// not implement (DoRA, bias, rank/alpha patterns, modules_to_save, fan_in_fan_out, ...).
LoraSpec loadAdapterConfig(const std::filesystem::path& dir);

/// Applies the adapter's LoRA config to `model` (which must not have LoRA yet) and loads
/// its weights. InputError naming the file and tensor for missing, extra, misshapen or
/// non-floating tensors. Returns the spec read.
LoraSpec loadAdapter(CausalLm& model, const std::filesystem::path& dir);

/// Folds every LoRA branch into its base weight and removes the branches.
void mergeLora(CausalLm& model);

}  // namespace loom

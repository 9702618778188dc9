#pragma once
// `trainer inspect --model DIR [--config FILE]`: what a Hugging Face model folder holds and
// what fine-tuning it would cost, computed from config.json alone (no weights are read).

#include <string>

namespace loom::cli {

/// Prints to stdout the architecture of `dir` (its config.json), parameter counts, the
/// trainable parameters of the fine-tuning method and a memory estimate per dtype (weights,
/// gradients, optimizer state). The method comes from `config_path` (finetune.method,
/// finetune.lora, or the adapter of finetune.adapter) when given, else LoRA r=16, alpha 32,
/// all-linear. An empty `dir` means the config's model.path. Returns the exit code; throws
/// loom::InputError (exit 2) for a missing folder, config.json or adapter.
int inspectModel(const std::string& dir, const std::string& config_path);

}  // namespace loom::cli

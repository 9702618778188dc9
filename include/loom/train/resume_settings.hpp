#pragma once
// The settings a checkpoint must agree with to be resumed (model, method, LoRA shape, data,
// batch, seed; not ranks, weights or the learning rate): their hash goes into each
// checkpoint's trainer_state.json, and so do the settings by key, so that a resume refused
// because one changed can say which ("finetune.lora.r 4 -> 8").

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace loom {

struct Config;

/// The settings by config key, in the order their hash has always joined them.
std::vector<std::pair<std::string, std::string>> resumeSettings(const Config& c);

/// The hash checkpoints record (unchanged from checkpoints written before the keys were).
std::string resumeHash(const Config& c);

/// "finetune.lora.r 4 -> 8, data.seq_len 512 -> 1024": the settings that differ between a
/// checkpoint's recorded ones and `c`; empty when the checkpoint recorded none.
std::string changedSettings(const std::map<std::string, std::string>& saved, const Config& c);

}  // namespace loom

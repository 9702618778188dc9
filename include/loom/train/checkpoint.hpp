#pragma once
// Checkpoints: `<run>/checkpoints/step-N/`, written by rank 0 into a temporary folder
// (files fsync'ed), then renamed, so a folder named step-N is always complete
// (DESIGN invariant 4). Contents:
//   trainable.safetensors  the trainable parameters (fp32 masters), by parameter name
//   optimizer.safetensors  AdamW state (train/optimizer.hpp; optimizer.pt from earlier versions)
//   adapter/               the LoRA adapter in PEFT layout (LoRA runs), loadable as is
//   trainer_state.json     steps done, the planner cursor of the next step, balancer
//                          weights, loss scale, config hash, world size

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace loom {

struct TrainerState {
  int64_t step = 0;    ///< optimizer steps completed
  std::string cursor;  ///< PlanCursor (JSON) of the next step
  std::vector<double> weights;
  double loss_scale = 1.0;
  int64_t loss_scale_good_steps = 0;  ///< fp16: good steps since the scale last changed
  std::string config_hash;            ///< of the settings that must not change across a resume
  /// Those settings by name ("finetune.lora.r" -> "8"), so that a refused resume can say
  /// which changed; empty in checkpoints written before they were recorded.
  std::map<std::string, std::string> resume_settings;
  int world_size = 1;

  std::string toJson() const;
  /// Throws InputError naming `source` and the key.
  static TrainerState fromJson(const std::string& text, const std::string& source);
};

/// Writes `<checkpoints_dir>/step-<state.step>` atomically: `write_files(tmp_dir)` fills
/// the folder, then trainer_state.json is added, everything synced, the folder renamed.
/// Keeps the newest `keep` checkpoints. Returns the final folder.
std::filesystem::path writeCheckpoint(
    const std::filesystem::path& checkpoints_dir, const TrainerState& state, int64_t keep,
    const std::function<void(const std::filesystem::path&)>& write_files);

/// The newest complete checkpoint folder in `checkpoints_dir`, if any.
std::optional<std::filesystem::path> newestCheckpoint(const std::filesystem::path& checkpoints_dir);

/// Reads `<dir>/trainer_state.json`; InputError when absent or malformed.
TrainerState readTrainerState(const std::filesystem::path& dir);

}  // namespace loom

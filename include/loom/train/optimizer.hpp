#pragma once
// The optimizer room: fp32 master weights of the trainable parameters, their AdamW state,
// the update, and the copy back into 16-bit parameters.
//
// Masters: an fp32 parameter is its own master; a 16-bit one (bf16/fp16 full fine-tuning)
// gets an fp32 copy, which receives the reduced gradient (GradSync's targets) and the
// update, and is copied back into the parameter after each step. A caller may give the
// master itself: LoRA in a 16-bit compute dtype trains 16-bit copies of the adapter factors
// whose masters are the fp32 factors the model holds (what the adapter file is written from).
//
// The update is torch's fused AdamW kernel (`at::_fused_adamw_`, CPU and CUDA): one call per
// parameter group (weight decay on tensors of 2 or more dimensions, none on norms and
// biases), all masters at once, no host synchronisation; 16-bit parameters are refreshed
// with one `_foreach_copy_`. It computes what torch.optim.AdamW (and libtorch's per-tensor
// torch::optim::AdamW, which Loom used before) computes, to rounding (tested to 1e-6).
//
// State in checkpoints: `optimizer.safetensors` with `<name>.exp_avg`, `<name>.exp_avg_sq`
// (fp32, as the masters) and `step` (steps taken); checkpoints of earlier Loom versions hold
// `optimizer.pt` (libtorch's serialisation of torch::optim::AdamW) and are read too.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace loom {

struct AdamWSettings {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< applied to tensors of 2 or more dimensions only
};

class Optimizer {
 public:
  /// `names`/`params`: the trainable parameters (any float dtype, one device), in the
  /// same order on every rank. `masters` (empty, or parallel to params): an fp32 tensor of
  /// the parameter's shape to be its master, or undefined for the default (the parameter
  /// itself when fp32, else an fp32 copy of it).
  Optimizer(std::vector<std::string> names, std::vector<at::Tensor> params, AdamWSettings settings,
            std::vector<at::Tensor> masters = {});

  /// fp32 masters, parallel to params (the parameter itself when it is fp32). Their
  /// `.grad` is what step() reads.
  const std::vector<at::Tensor>& masters() const { return masters_; }
  const std::vector<at::Tensor>& params() const { return params_; }
  const std::vector<std::string>& names() const { return names_; }

  /// One AdamW step at learning rate `lr` on every master from its .grad (a master without
  /// a gradient is an error), then the 16-bit parameters take their masters' values.
  void step(double lr);
  /// Copies masters into the 16-bit parameters (after masters were set from outside).
  void copyMastersToParams();

  int64_t steps() const { return steps_; }

  /// Writes `<dir>/optimizer.safetensors`.
  void save(const std::filesystem::path& dir) const;
  /// Reads `<dir>/optimizer.safetensors`, or an earlier version's `<dir>/optimizer.pt`.
  /// InputError naming the file (and tensor) when neither is there or the state does not
  /// fit these parameters.
  void load(const std::filesystem::path& dir);

 private:
  struct Group {
    double weight_decay = 0.0;
    std::vector<size_t> members;  // indices into masters_
  };
  void loadLegacy(const std::filesystem::path& file);

  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> masters_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<at::Tensor> step_tensors_;  // [1] fp32 per master: the fused kernel's counters
  std::vector<Group> groups_;
  AdamWSettings settings_;
  int64_t steps_ = 0;
};

}  // namespace loom

#include "loom/train/optimizer.hpp"

#include <torch/torch.h>

#include "loom/core/error.hpp"
#include "loom/model/safetensors.hpp"

namespace loom {

namespace fs = std::filesystem;

Optimizer::Optimizer(std::vector<std::string> names, std::vector<at::Tensor> params,
                     AdamWSettings settings, std::vector<at::Tensor> masters)
    : names_(std::move(names)), params_(std::move(params)), settings_(settings) {
  LOOM_CHECK(names_.size() == params_.size(),
             names_.size() << " names for " << params_.size() << " parameters");
  LOOM_CHECK(masters.empty() || masters.size() == params_.size(),
             masters.size() << " masters for " << params_.size() << " parameters");
  LOOM_CHECK(!params_.empty(), "nothing to train: no parameter requires a gradient");
  at::NoGradGuard no_grad;
  Group decay{settings_.weight_decay, {}}, no_decay{0.0, {}};
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& p = params_[i];
    LOOM_CHECK(p.device() == params_[0].device(), "parameters on several devices");
    if (!masters.empty() && masters[i].defined()) {
      const at::Tensor& m = masters[i];
      LOOM_CHECK(m.scalar_type() == at::kFloat && m.sizes() == p.sizes() &&
                     m.device() == p.device() && !m.is_same(p),
                 "the master of " << names_[i] << " must be a separate fp32 tensor of shape "
                                  << p.sizes() << " on " << p.device());
      masters_.push_back(m);
    } else {
      // fp32 masters for 16-bit parameters; fp32 parameters are their own master.
      masters_.push_back(p.scalar_type() == at::kFloat ? p : p.detach().to(at::kFloat).clone());
    }
    exp_avg_.push_back(at::zeros_like(masters_.back(), at::MemoryFormat::Contiguous));
    exp_avg_sq_.push_back(at::zeros_like(masters_.back(), at::MemoryFormat::Contiguous));
    step_tensors_.push_back(at::zeros({}, masters_.back().options()));
    // Norms and biases (1-D) get no weight decay.
    (p.dim() >= 2 ? decay : no_decay).members.push_back(i);
  }
  for (Group* g : {&decay, &no_decay}) {
    if (!g->members.empty()) groups_.push_back(std::move(*g));
  }
}

void Optimizer::step(double lr) {
  at::NoGradGuard no_grad;
  for (const Group& g : groups_) {
    std::vector<at::Tensor> p, grads, m, v, steps;
    for (size_t i : g.members) {
      const at::Tensor& grad = masters_[i].grad();
      LOOM_CHECK(grad.defined(), "no gradient for " << names_[i]);
      p.push_back(masters_[i]);
      grads.push_back(grad);
      m.push_back(exp_avg_[i]);
      v.push_back(exp_avg_sq_[i]);
      steps.push_back(step_tensors_[i]);
    }
    // As torch.optim.AdamW(fused=True): the caller advances the step counters.
    at::_foreach_add_(steps, 1.0);
    at::_fused_adamw_(p, grads, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, settings_.beta1,
                      settings_.beta2, g.weight_decay, settings_.eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  }
  ++steps_;
  copyMastersToParams();
}

void Optimizer::copyMastersToParams() {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> dst, src;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (masters_[i].is_same(params_[i])) continue;
    dst.push_back(params_[i].detach());
    src.push_back(masters_[i]);
  }
  if (!dst.empty()) at::_foreach_copy_(dst, src);
}

void Optimizer::save(const fs::path& dir) const {
  NamedTensors named;
  for (size_t i = 0; i < names_.size(); ++i) {
    named.emplace_back(names_[i] + ".exp_avg", exp_avg_[i]);
    named.emplace_back(names_[i] + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  named.emplace_back("step", at::full({1}, steps_, at::kLong));
  saveSafetensors(dir / "optimizer.safetensors", named, {{"optimizer", "adamw"}});
}

void Optimizer::load(const fs::path& dir) {
  const fs::path file = dir / "optimizer.safetensors";
  if (!fs::exists(file)) {
    const fs::path legacy = dir / "optimizer.pt";
    LOOM_INPUT_CHECK(fs::exists(legacy), "checkpoint " << dir.string()
                                                       << ": no optimizer state (expected "
                                                          "optimizer.safetensors or optimizer.pt)");
    loadLegacy(legacy);
    return;
  }
  SafetensorsFile f(file);
  at::NoGradGuard no_grad;
  auto read = [&](const std::string& name, const at::Tensor& into) {
    at::Tensor t = f.tensor(name);  // InputError naming the file when absent
    LOOM_INPUT_CHECK(t.sizes() == into.sizes() && t.scalar_type() == at::kFloat,
                     file.string() << ": tensor " << name << " is " << t.scalar_type() << " "
                                   << t.sizes() << ", the model needs float " << into.sizes());
    into.copy_(t);
  };
  for (size_t i = 0; i < names_.size(); ++i) {
    read(names_[i] + ".exp_avg", exp_avg_[i]);
    read(names_[i] + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  const at::Tensor step = f.tensor("step");
  LOOM_INPUT_CHECK(
      step.numel() == 1 && step.scalar_type() == at::kLong && step.item<int64_t>() >= 0,
      file.string() << ": tensor step must hold one non-negative int64");
  steps_ = step.item<int64_t>();
  for (auto& s : step_tensors_) s.fill_(static_cast<double>(steps_));
}

void Optimizer::loadLegacy(const fs::path& file) {
  // The groups exactly as Loom built torch::optim::AdamW before (decay group first), so the
  // archive's state maps onto the same tensors.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const Group& g : groups_) {
    std::vector<at::Tensor> members;
    for (size_t i : g.members) members.push_back(masters_[i]);
    groups.emplace_back(members,
                        std::make_unique<torch::optim::AdamWOptions>(
                            torch::optim::AdamWOptions(1e-3).weight_decay(g.weight_decay)));
  }
  torch::optim::AdamW legacy(groups, torch::optim::AdamWOptions(1e-3));
  try {
    torch::load(legacy, file.string());
  } catch (const c10::Error& e) {
    throw InputError(file.string() + ": not a readable optimizer state for these parameters (" +
                     e.what_without_backtrace() + ")");
  }
  at::NoGradGuard no_grad;
  int64_t steps = 0;
  for (size_t i = 0; i < masters_.size(); ++i) {
    auto it = legacy.state().find(masters_[i].unsafeGetTensorImpl());
    if (it == legacy.state().end()) continue;  // no step taken yet
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    LOOM_INPUT_CHECK(s.exp_avg().sizes() == exp_avg_[i].sizes(),
                     file.string()
                         << ": state of " << names_[i] << " has shape " << s.exp_avg().sizes()
                         << ", the model needs " << exp_avg_[i].sizes());
    exp_avg_[i].copy_(s.exp_avg());
    exp_avg_sq_[i].copy_(s.exp_avg_sq());
    steps = s.step();
  }
  steps_ = steps;
  for (auto& s : step_tensors_) s.fill_(static_cast<double>(steps_));
}

}  // namespace loom

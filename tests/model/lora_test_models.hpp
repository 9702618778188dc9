#pragma once
// Tiny LoRA models for the decoder tests (CPU) and the LoRA gpu test: a random base, adapters
// with nonzero B, and copies of one model in another dtype or on another device.

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "loom/model/decoder.hpp"
#include "loom/model/lora.hpp"
#include "model_test_util.hpp"

namespace loom::testing {

inline std::shared_ptr<CausalLm> randomModel(const HfConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  auto m = std::make_shared<CausalLm>(c, DecoderOptions{});
  m->initRandom(0.1);
  return m;
}

/// Projections with LoRA and nonzero B (B starts at zero, which would hide a wrong branch).
inline std::vector<Projection*> loraProjections(CausalLm& model, uint64_t seed) {
  LoraSpec spec;
  spec.rank = 4;
  spec.alpha = 8;
  applyLora(model, spec);
  torch::manual_seed(seed);
  std::vector<Projection*> out;
  torch::NoGradGuard no_grad;
  for (auto& [path, p] : model.projections()) {
    p->loraB().normal_(0.0, 0.1);
    out.push_back(p);
  }
  return out;
}

/// A qwen3 tiny model in `dtype` on `device` with loraProjections' adapter shape, holding
/// `source`'s values (base and adapter), in training mode.
inline std::shared_ptr<CausalLm> loraModelLike(CausalLm& source, at::ScalarType dtype,
                                               const c10::Device& device = c10::kCPU) {
  DecoderOptions o;
  o.dtype = dtype;
  o.device = device;
  auto m = std::make_shared<CausalLm>(tinyConfig("qwen3"), o);
  LoraSpec spec;
  spec.rank = 4;
  spec.alpha = 8;
  applyLora(*m, spec);
  torch::NoGradGuard no_grad;
  auto dst = m->named_parameters();
  for (const auto& item : source.named_parameters()) dst[item.key()].copy_(item.value());
  m->train();
  return m;
}

}  // namespace loom::testing

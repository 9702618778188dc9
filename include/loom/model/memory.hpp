#pragma once
// What a training run will hold in memory on one rank, known before it starts: `trainer
// inspect --config` and `--dry-run` print it, and the trainer warns when a rank's estimate
// exceeds its device's free memory. The terms follow what the code keeps (decoder.cpp,
// nf4.cpp, loss.cpp, the trainer's fp32 masters and gradient buckets); the activation term
// counts the tensors autograd saves per layer for the attention and MLP of that code.

#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "loom/model/hf_config.hpp"
#include "loom/model/lora.hpp"

namespace loom {

/// The settings of one rank that decide its memory.
struct MemoryPlan {
  at::ScalarType dtype = at::kBFloat16;  ///< compute dtype of the rank
  bool nf4_base = false;                 ///< QLoRA: decoder projections in NF4
  std::optional<LoraSpec> lora;          ///< none: full fine-tuning
  int64_t micro_batch = 1;
  int64_t seq_len = 2048;
  bool gradient_checkpointing = false;
  int64_t loss_chunk_tokens = 2048;
  bool packed = true;  ///< rows hold several documents (the CPU attention then builds a mask)
  bool cuda = false;   ///< a CUDA rank: add the context
};

/// Bytes, by what holds them. The peak of a step is the larger of two moments: the end of
/// forward, when the loss's chunk buffers sit on top of everything saved, and backward, when a
/// layer's gradients (and, checkpointed, its recomputed activations) do.
struct MemoryEstimateBytes {
  uint64_t base_weights = 0;  ///< the model's weights in their storage (NF4, 16-bit or fp32)
  uint64_t trainable = 0;     ///< fp32 masters, gradients (fp32 buckets) and AdamW moments
  uint64_t activations = 0;   ///< saved for backward at the end of forward (one micro-batch)
  uint64_t loss = 0;          ///< the chunked cross-entropy's [chunk, vocab] buffers
  uint64_t backward = 0;      ///< backward's working set: one layer's gradients (+ recompute)
  uint64_t transient = 0;     ///< in backward: a dequantized NF4 weight, full-FT [V, H] grads
  uint64_t cuda_context = 0;  ///< CUDA context and cuBLAS workspace (not in tensor peaks)
  /// What tensors hold at the peak (what a caching allocator's peak counts).
  uint64_t tensors() const {
    return base_weights + trainable + activations + std::max(loss, backward + transient);
  }
  uint64_t total() const { return tensors() + cuda_context; }
};

/// The estimate for `config` run with `plan`.
MemoryEstimateBytes estimateRankMemory(const HfConfig& config, const MemoryPlan& plan);

/// "base 1.26 GiB (nf4), trainable 267.0 MiB, activations 1.08 GiB (4 x 2048, checkpointed),
/// then the larger of loss chunk ... and backward ...; CUDA context ~... = 6.08 GiB".
std::string describeRankMemory(const MemoryEstimateBytes& m, const MemoryPlan& plan);

/// "1.23 GiB", or "12.3 MiB" below a GiB.
std::string gibText(uint64_t bytes);

}  // namespace loom

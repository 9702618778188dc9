#pragma once
// Text generation with a KV cache: a batch of prompts of different lengths, left-padded,
// prefilled in one forward, then one token per row per step. Greedy by default; sampling
// with temperature, top-k, top-p and a repetition penalty, processed as transformers'
// logits processors do (RepetitionPenalty, then Temperature, TopK, TopP), from a seeded
// generator so that a run repeats exactly.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace loom {

class CausalLm;

struct SamplingSettings {
  int64_t max_new_tokens = 256;
  double temperature = 0.0;         ///< 0: greedy (no warpers), else sample at this temperature
  int64_t top_k = 0;                ///< 0: off
  double top_p = 1.0;               ///< 1: off
  double repetition_penalty = 1.0;  ///< 1: off (CTRL's penalty, over prompt and output)
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  ///< a row ends after producing one of these (EOS, end of turn)

  /// InputError naming the flag ("--top-p" ...) for an out-of-range setting.
  void validate() const;
};

/// One row's output: the new tokens (a stop token included, as transformers returns it) and
/// why it ended: "stop" (a stop id), "stop_string" (the callback ended it) or "length".
struct Generated {
  std::vector<int64_t> tokens;
  std::string finish_reason;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;  ///< real (unpadded) prompt tokens prefilled
  int64_t new_tokens = 0;
  double prefill_s = 0;
  double decode_s = 0;
};

/// Told each new token of each unfinished row; returns true to end that row now (a stop
/// string seen in its decoded text).
using TokenCallback = std::function<bool(size_t row, int64_t token)>;

/// Generates for each prompt (token ids, not empty) on the model's device, without gradients.
/// `pad_id` fills the left padding and the steps of finished rows (it is never attended to).
std::vector<Generated> generate(CausalLm& model, const std::vector<std::vector<int64_t>>& prompts,
                                const SamplingSettings& settings, int64_t pad_id,
                                GenerationStats* stats = nullptr,
                                const TokenCallback& on_token = {});

/// transformers' processors on fp32 `logits` [B, V] given the sequences so far [B, L]
/// (padding included, as transformers passes them): the repetition penalty, and when sampling
/// the temperature, top-k and top-p filters (filtered entries -inf).
at::Tensor processLogits(const at::Tensor& logits, const at::Tensor& sequences,
                         const SamplingSettings& settings);

}  // namespace loom

#pragma once
// The training loss: a SUM of token cross-entropies and the number of tokens summed, never a
// mean (the trainer divides by the global loss-token count, DESIGN invariant 1).
//
// Target convention for a packed row of tokens[0..T-1]:
//   the input at position t predicts tokens[t+1], counted only when
//     loss_mask[t+1] == 1                (the token is a training target) and
//     documents[t+1] == documents[t]     (no prediction across a document boundary).
//   The last position of a row predicts nothing.
//
// Logits are computed in chunks of tokens through lm_head with log-softmax in fp32; while a
// chunk's logits exist, forward also makes its gradients (hidden, and lm_head's when it
// trains), so [tokens, vocab] logits never exist whole and backward never recomputes them.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace loom {

/// Flat positions and targets of a packed batch under the convention above.
struct NextTokenTargets {
  at::Tensor positions;  ///< [M] int64 indices into the flattened [B * T] positions
  at::Tensor targets;    ///< [M] int64 token ids to predict there
};

/// Selects the positions that carry a loss. `tokens` [B, T] integer, `loss_mask` [B, T]
/// (nonzero = target), `documents` [B, T] integer or undefined (one document per row).
NextTokenTargets nextTokenTargets(const at::Tensor& tokens, const at::Tensor& loss_mask,
                                  const at::Tensor& documents);

/// A summed loss and its token count.
struct LossSum {
  at::Tensor sum;     ///< fp32 scalar, differentiable w.r.t. hidden and lm_head weight
  int64_t count = 0;  ///< number of target tokens in `sum`
};

/// sum over i of -log softmax(hidden[i] W^T)[targets[i]], in chunks of `chunk_tokens` rows.
/// hidden [M, H] and weight [V, H] in the model dtype (logits are rounded to it, then upcast
/// to fp32, as transformers does); targets [M] int64. Gradients are exact and made during
/// forward (only for inputs that require them, under grad mode): O(chunk_tokens * V) working
/// memory, plus hidden's gradient [M, H] (and weight's, fp32 [V, H], when it trains) held
/// until backward. `grad_scale`: the factor the caller will back-propagate the sum with (the
/// fp16 loss scale); the softmax differences are scaled by it before rounding to the model
/// dtype, as autograd would. Backward with another factor is still exact in fp32.
/// One backward per forward.
at::Tensor chunkedCrossEntropySum(const at::Tensor& hidden, const at::Tensor& weight,
                                  const at::Tensor& targets, int64_t chunk_tokens = 2048,
                                  double grad_scale = 1.0);

/// The loss of a batch from final hidden states [B, T, H] (CausalLm::hidden) and the lm_head
/// weight [V, H] (CausalLm::lmHeadWeight).
LossSum causalLmLoss(const at::Tensor& hidden, const at::Tensor& lm_head_weight,
                     const at::Tensor& tokens, const at::Tensor& loss_mask,
                     const at::Tensor& documents, int64_t chunk_tokens = 2048,
                     double grad_scale = 1.0);

/// The same from targets the caller already knows (a batch layout's, made on the host by
/// the planner): no device-side search for them, so no host synchronisation.
LossSum causalLmLoss(const at::Tensor& hidden, const at::Tensor& lm_head_weight,
                     const NextTokenTargets& targets, int64_t chunk_tokens = 2048,
                     double grad_scale = 1.0);

}  // namespace loom

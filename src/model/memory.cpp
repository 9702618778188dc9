#include "loom/model/memory.hpp"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "loom/model/hf_io.hpp"
#include "loom/model/nf4.hpp"

namespace loom {
namespace detail {
namespace {

struct Shape {
  const char* name;
  int64_t in, out;
};

/// NF4 storage of an [out, in] weight with double quantization (nf4.hpp).
uint64_t nf4Bytes(int64_t numel) {
  const int64_t blocks = (numel + kNf4BlockSize - 1) / kNf4BlockSize;
  const int64_t blocks2 = (blocks + kNf4NestedBlockSize - 1) / kNf4NestedBlockSize;
  return static_cast<uint64_t>((numel + 1) / 2 + blocks + 4 * blocks2 + 4 * 256);
}

}  // namespace
}  // namespace detail

std::string gibText(uint64_t bytes) {
  char buf[32];
  if (bytes < (1ull << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", bytes / double(1ull << 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", bytes / double(1ull << 30));
  }
  return buf;
}

MemoryEstimateBytes estimateRankMemory(const HfConfig& c, const MemoryPlan& plan) {
  const uint64_t s = c10::elementSize(plan.dtype);
  const bool wide = s >= 4;  // fp32 compute: the LoRA branch needs no fp32 copies of x
  const int64_t h = c.hidden_size, inter = c.intermediate_size, v = c.vocab_size;
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const int64_t layers = c.num_hidden_layers;
  const detail::Shape shapes[] = {
      {"q_proj", h, q},        {"k_proj", h, kv},     {"v_proj", h, kv},      {"o_proj", q, h},
      {"gate_proj", h, inter}, {"up_proj", h, inter}, {"down_proj", inter, h}};
  const ParameterCounts counts = countParameters(c, plan.lora ? &*plan.lora : nullptr);
  MemoryEstimateBytes m;

  // Base weights: the projections in NF4 (QLoRA) or the compute dtype, the rest in the dtype.
  int64_t projection_params = 0;
  uint64_t largest_projection = 0;
  for (const auto& sh : shapes) {
    projection_params += sh.in * sh.out;
    largest_projection = std::max<uint64_t>(largest_projection, sh.in * sh.out);
  }
  const int64_t other = counts.total - projection_params * layers;
  if (plan.nf4_base) {
    uint64_t nf4 = 0;
    for (const auto& sh : shapes) nf4 += detail::nf4Bytes(sh.in * sh.out);
    m.base_weights = nf4 * layers + other * s;
    m.transient = largest_projection * s;  // dequantized for one product at a time
  } else {
    m.base_weights = counts.total * s;
  }

  // Trainable: fp32 masters (16-bit full fine-tuning) or the fp32 LoRA weights themselves
  // (plus their 16-bit copies in a 16-bit dtype without dropout), fp32 gradient buckets, two
  // fp32 AdamW moments.
  const uint64_t p = static_cast<uint64_t>(counts.trainable);
  if (plan.lora) {
    const bool copies = !wide && plan.lora->dropout == 0;
    m.trainable = p * (4 + (copies ? s : 0) + 4 + 8);
  } else {
    m.trainable = p * ((wide ? 0 : 4) + 4 + 8);
  }

  // Activations, per token and layer: what autograd saves in decoder.cpp.
  const int64_t rank = plan.lora ? plan.lora->rank : 0;
  auto targeted = [&](const char* name) {
    if (!plan.lora) return false;
    return plan.lora->targets(std::string("model.layers.0.") +
                              (name[1] == '_' ? "self_attn." : "mlp.") + name);
  };
  // Autograd saves a tensor only where some input of the op needs a gradient: with a frozen
  // base, norm weights and projections keep nothing of their own; the LoRA branch keeps its
  // input (in fp32: a copy per projection below fp32, the shared tensor at fp32) and x A.
  // Without dropout the branches run in the compute dtype from the shared input (decoder's
  // projectShared): they keep that input once and x A in the dtype.
  const double dropout_bytes = plan.lora && plan.lora->dropout > 0 ? 5.0 : 0.0;  // mask + copy
  const bool fused = plan.lora && plan.lora->dropout == 0;
  const bool full = !plan.lora;
  double per_token = 0;
  bool attn_in = false, o_in = false, mlp_in = false, down_in = false;
  for (const auto& sh : shapes) {
    if (!targeted(sh.name)) continue;
    per_token += fused ? static_cast<double>(s) * rank
                       : (wide ? 0.0 : 4.0 * sh.in) + 4.0 * rank + dropout_bytes * sh.in;
    const std::string n = sh.name;
    attn_in |= n == "q_proj" || n == "k_proj" || n == "v_proj";
    o_in |= n == "o_proj";
    mlp_in |= n == "gate_proj" || n == "up_proj";
    down_in |= n == "down_proj";
  }
  if (wide || fused)
    per_token += static_cast<double>(s) *
                 ((attn_in ? h : 0) + (o_in ? q : 0) + (mlp_in ? h : 0) + (down_in ? inter : 0));
  // RMSNorm keeps x in fp32 for its backward; on CUDA torch's fused kernel keeps x in its
  // dtype and one fp32 rstd per row (model/fused_ops).
  const double norm = plan.cuda ? s * h + 4.0 : 4.0 * h;
  per_token += 2 * norm;  // input and post-attention norms
  if (c.qk_norm) {        // q/k norms: their inputs, per head
    per_token += plan.cuda ? s * (q + kv) + 4.0 * (c.num_attention_heads + c.num_key_value_heads)
                           : 4.0 * (q + kv);
  }
  per_token += s * (q + 2.0 * kv) + s * q + 4.0 * c.num_attention_heads;  // SDPA: q, k, v, out, lse
  per_token += 2.0 * s * inter;  // swiglu keeps gate and up (model/fused_ops)
  if (full) {
    // Every weight trains: norms keep their normed outputs, which are (with the attention
    // output and the MLP product) the projections' inputs.
    per_token += s * ((c.qk_norm ? q + kv : 0) + h + q + h + inter);
  }
  const double tokens = static_cast<double>(plan.micro_batch * plan.seq_len);
  const double layer_bytes = per_token * tokens;
  // A packed row on the boolean-mask path holds a [B, 1, T, T] mask (and on CUDA its additive
  // bias in the compute dtype).
  const double mask = plan.packed ? static_cast<double>(plan.micro_batch) * plan.seq_len *
                                        plan.seq_len * (plan.cuda ? 1.0 + s : 1.0)
                                  : 0.0;
  // Backward's working set: the gradient flowing between layers (saved tensors are freed as
  // the gradients that replace them are made), plus, checkpointed, a recomputed layer.
  const double working = tokens * 4.0 * h;
  const double head = tokens * (norm + 2.0 * s * h);  // final norm, hidden states, targets
  const double saved = plan.gradient_checkpointing ? tokens * s * h * layers  // layer inputs
                                                   : layer_bytes * layers;
  m.activations = static_cast<uint64_t>(saved + mask + head);
  m.backward = static_cast<uint64_t>(working + (plan.gradient_checkpointing ? layer_bytes : 0));

  // The chunked loss makes its gradients in forward: [chunk, V] logits in the dtype, their
  // fp32 copy (turned into the softmax difference in place), logsumexp's fp32 temporary and
  // the difference in the dtype; hidden's gradient [targets, H] in the dtype is kept for
  // backward (at most one per token).
  const double chunk = static_cast<double>(std::min<int64_t>(
      plan.loss_chunk_tokens, std::max<int64_t>(1, plan.micro_batch * plan.seq_len)));
  m.loss = static_cast<uint64_t>(chunk * v * ((wide ? 0.0 : 2.0 * s) + 8.0) + tokens * s * h);
  if (!plan.lora) {
    // Full fine-tuning: forward also accumulates lm_head's gradient in an fp32 [V, H] buffer,
    // plus one chunk's [V, H] product at a time, and keeps the buffer until backward. Tied to
    // the embedding, autograd holds that gradient until the embedding's dense one arrives
    // and sums the two into another [V, H] tensor.
    const uint64_t vh = static_cast<uint64_t>(v) * h;
    m.loss += vh * 8;
    m.transient += vh * 4 + (c.tie_word_embeddings ? 2 * vh * s : 0);
  }

  // CUDA context, cuBLAS workspaces and the kernels' images: not in the allocator's peak.
  m.cuda_context = plan.cuda ? 600ull << 20 : 0;
  return m;
}

std::string describeRankMemory(const MemoryEstimateBytes& m, const MemoryPlan& plan) {
  std::ostringstream out;
  out << "base " << gibText(m.base_weights) << " ("
      << (plan.nf4_base ? "nf4" : c10::toString(plan.dtype)) << "), trainable "
      << gibText(m.trainable) << ", activations " << gibText(m.activations) << " ("
      << plan.micro_batch << " x " << plan.seq_len
      << (plan.gradient_checkpointing ? ", checkpointed" : "")
      << "), then the larger of loss chunk " << gibText(m.loss) << " (" << plan.loss_chunk_tokens
      << " tokens) and backward " << gibText(m.backward + m.transient);
  if (m.cuda_context) out << "; CUDA context ~" << gibText(m.cuda_context);
  out << " = " << gibText(m.total());
  return out.str();
}

}  // namespace loom

#pragma once
// The decoder-only transformer of Qwen3, Qwen2 and Llama 3 as libtorch modules, computing
// what transformers computes (same op order, RMSNorm in fp32, RoPE tables cast to the
// model dtype). Parameter names mirror Hugging Face's (`model.layers.0.self_attn.q_proj.weight`,
// `lm_head.weight`), so loading a checkpoint is a name match.
//
// Packed rows: a row may hold several documents. `positions` restart at 0 in each document
// and `documents` gives each token's document id; a token attends to the tokens of its own
// document at or before it (causal AND same document).

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loom/model/attention.hpp"
#include "loom/model/hf_config.hpp"
#include "loom/model/nf4.hpp"

namespace loom {

namespace detail {
class DecoderBody;
}  // namespace detail

/// One batch for the decoder.
/// Keys and values of the tokens seen so far, per layer, for decoding a few tokens at a time
/// (model/generate). Rows may be left-padded: `real` marks the key positions that are tokens.
struct KvCache {
  std::vector<at::Tensor> keys, values;  ///< per layer [B, S, Hkv, D], keys after RoPE
  at::Tensor real;                       ///< [B, S] bool on the model's device
  int64_t length() const { return real.defined() ? real.size(1) : 0; }
};

struct DecoderInput {
  at::Tensor tokens;     ///< [B, T] int64 token ids
  at::Tensor positions;  ///< [B, T] int64 RoPE positions; undefined: 0..T-1 in every row
  /// [B, T] integer document id of each token (any values; equal ids = same document).
  /// Undefined: each row is one document (plain causal attention, the fastest path).
  at::Tensor documents;
  /// The batch layout's document lengths over the B * T cells ([S + 1] int32) and the
  /// longest, when the caller has them (the planner does); otherwise derived from
  /// `documents` when a varlen attention kernel needs them.
  at::Tensor cu_seqlens;
  int64_t max_seqlen = 0;
  /// Each row holds at most one document (then padding): false unless the caller knows,
  /// when `documents` is defined.
  bool one_document_per_row = false;
  /// Generation: the tokens extend `cache` (their keys and values are appended to it) and
  /// attend to everything cached before them. `documents` must be undefined; `real` [B, T]
  /// bool marks padding (false) that nothing may attend to (undefined: all real).
  KvCache* cache = nullptr;
  at::Tensor real;
};

/// How the decoder is built.
struct DecoderOptions {
  at::ScalarType dtype = at::kFloat;  ///< dtype of the base weights and activations
  c10::Device device = c10::Device(c10::kCPU);
  /// Recompute each layer's activations in backward instead of keeping them.
  bool activation_checkpointing = false;
  /// QLoRA: the projections of every decoder layer hold a frozen NF4 weight (nf4.hpp)
  /// instead of a `weight` parameter; embeddings, norms and lm_head stay in `dtype`.
  bool nf4_base = false;
  /// The attention kernel for rows that pack several documents (attention.hpp); rows of one
  /// document use SDPA's causal path whatever this says. kAuto: the mask on the CPU, the
  /// memory-efficient kernel on CUDA (the trainer chooses flash on sm_80+).
  AttentionBackend attention = AttentionBackend::kAuto;
};

/// A linear projection y = x W^T (+ b) with an optional LoRA branch
/// y += scaling * B(A(dropout(x))): with dropout, in the LoRA weights' dtype (fp32), as PEFT
/// does; without, in the compute dtype (bf16 on GPU, as PEFT under autocast), see projectShared.
/// Parameters: `weight` [out, in], `bias` [out], `lora_A.weight` [r, in], `lora_B.weight` [out, r].
/// A quantized projection has no `weight` parameter: W is a frozen NF4 weight, dequantized
/// to x's dtype for each product (nf4Linear).
class Projection : public torch::nn::Module {
 public:
  Projection(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options,
             bool quantized = false);

  /// [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x);
  /// The base projection alone (no LoRA branch).
  at::Tensor baseForward(const at::Tensor& x);
  /// Has a LoRA branch that draws no dropout now (dropout 0, or evaluation): it can share
  /// its input read with its siblings (projectShared).
  bool loraWithoutDropout() const;

  /// Adds a LoRA branch: A kaiming-uniform(a=sqrt(5)), B zeros, both in `lora_dtype`.
  void enableLora(int64_t rank, double scaling, double dropout, at::ScalarType lora_dtype);
  /// Folds scaling * B A into `weight` (computed in fp32) and removes the branch.
  /// Error on a quantized projection (merge into the 16-bit base instead).
  void mergeLora();
  bool hasLora() const { return lora_a_.defined(); }
  /// For training in a 16-bit compute dtype: 16-bit copies of the fp32 factors A and B,
  /// leaves that require a gradient, which the forward uses in place of casting the factors
  /// per micro-batch (projectShared). The factors stay the parameters; the caller trains
  /// the copies with the factors as their masters and refreshes the copies after each step.
  /// Only for a branch without dropout (PEFT's dropout path computes in the adapter dtype).
  void makeLoraComputeCopies(at::ScalarType dtype);
  const at::Tensor& loraComputeA() const { return compute_a_; }  ///< undefined without copies
  const at::Tensor& loraComputeB() const { return compute_b_; }  ///< undefined without copies

  bool quantized() const { return quantized_; }
  /// The NF4 weight of a quantized projection (empty until loaded).
  const Nf4Weight& nf4() const { return nf4_; }
  /// Sets the NF4 weight: shape [out, in], on this projection's device.
  void setNf4(Nf4Weight weight);

  at::Tensor& weight() { return weight_; }  ///< undefined when quantized
  at::Tensor& bias() { return bias_; }      ///< undefined when the projection has no bias
  at::Tensor& loraA() { return lora_a_; }   ///< [r, in]; undefined without LoRA
  at::Tensor& loraB() { return lora_b_; }   ///< [out, r]; undefined without LoRA
  double loraScaling() const { return lora_scaling_; }
  double loraDropout() const { return lora_dropout_; }
  int64_t inFeatures() const { return in_features_; }
  int64_t outFeatures() const { return out_features_; }

 private:
  int64_t in_features_;
  int64_t out_features_;
  at::TensorOptions options_;
  bool quantized_ = false;
  Nf4Weight nf4_;
  at::Tensor weight_;
  at::Tensor bias_;
  at::Tensor lora_a_;
  at::Tensor lora_b_;
  at::Tensor compute_a_;  // 16-bit copies of lora_a_/lora_b_ (makeLoraComputeCopies)
  at::Tensor compute_b_;
  double lora_scaling_ = 0.0;
  double lora_dropout_ = 0.0;
};

/// Projections of the same input x (q/k/v, gate/up): their base outputs, plus each LoRA
/// branch without dropout computed with one product of x by the concatenated A factors
/// ([sum r, in]) and one addmm per projection into its base output, in the compute dtype
/// (the 16-bit copies when the projection has them, else a cast of the fp32 adapter weights
/// inside the graph). A single fp32 branch keeps PEFT's exact order of operations; a branch
/// with dropout keeps PEFT's own mask (forward()).
std::vector<at::Tensor> projectShared(const at::Tensor& x, const std::vector<Projection*>& projs);

/// A causal language model: `model` (embed_tokens, layers, norm) and `lm_head`
/// (absent when tied to the embedding).
class CausalLm : public torch::nn::Module {
 public:
  /// Allocates parameters (uninitialised values: load a checkpoint or call initRandom()).
  CausalLm(HfConfig config, DecoderOptions options);

  /// Final-normed hidden states [B, T, hidden] in the model dtype.
  at::Tensor hidden(const DecoderInput& input);
  /// Logits [..., vocab] of hidden states, in the model dtype. Training uses the chunked
  /// loss (loss.hpp) instead, which never holds [tokens, vocab] whole.
  at::Tensor logits(const at::Tensor& hidden);
  /// The lm_head weight [vocab, hidden]: the embedding when tied.
  at::Tensor lmHeadWeight() const;

  /// Every projection that LoRA may target, by Hugging Face module path
  /// ("model.layers.3.mlp.up_proj"), in layer order; lm_head is not among them.
  std::vector<std::pair<std::string, Projection*>> projections();

  void setActivationCheckpointing(bool on) { options_.activation_checkpointing = on; }
  /// The attention kernel for packed rows (DecoderOptions::attention).
  void setAttention(AttentionBackend backend) { options_.attention = backend; }
  const HfConfig& config() const { return config_; }
  const DecoderOptions& options() const { return options_; }

  /// Fills the weights like transformers' _init_weights (normal(0, std), norms 1, biases 0;
  /// an NF4 projection gets such a weight quantized); for tests and smoke runs without a
  /// checkpoint.
  void initRandom(double std = 0.02);

 private:
  HfConfig config_;
  DecoderOptions options_;
  std::shared_ptr<detail::DecoderBody> body_;
  std::shared_ptr<Projection> lm_head_;
  at::Tensor inv_freq_;  // [head_dim / 2] fp32 RoPE inverse frequencies

  /// Generation: appends the rows' padding flags to `cache` and makes the mask of its
  /// queries over every cached key.
  AttentionInputs extendCache(KvCache& cache, const DecoderInput& input, int64_t b,
                              int64_t t) const;
};

/// The RoPE inverse frequencies transformers computes for `config` (fp32, CPU), including
/// Llama 3 frequency smoothing.
at::Tensor ropeInverseFrequencies(const HfConfig& config);

}  // namespace loom

#include "loom/model/decoder.hpp"

#include <cmath>

#include <torch/torch.h>

#include "loom/core/error.hpp"
#include "loom/core/strings.hpp"
#include "loom/model/fused_ops.hpp"

namespace loom {
namespace detail {

// ---------------------------------------------------------------------------------------------
// Building blocks. Each mirrors its transformers counterpart op for op, so that fp32 results
// agree to rounding and bf16 results round the same way (on CUDA, RMSNorm is torch's fused
// kernel, one rounding from transformers': model/fused_ops).

/// LlamaRMSNorm / Qwen3RMSNorm: normalise in fp32, cast back, then scale by the weight.
class RmsNorm : public torch::nn::Module {
 public:
  RmsNorm(int64_t dim, double eps, const at::TensorOptions& options) : eps_(eps) {
    weight_ = register_parameter("weight", at::ones({dim}, options));
  }
  at::Tensor forward(const at::Tensor& x) { return rmsNorm(x, weight_, eps_); }

 private:
  double eps_;
  at::Tensor weight_;
};

/// Holds a single `weight` parameter (embed_tokens, lora_A, lora_B).
class WeightHolder : public torch::nn::Module {
 public:
  explicit WeightHolder(at::Tensor w) { weight = register_parameter("weight", std::move(w)); }
  at::Tensor weight;
};

at::Tensor rotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

class Attention : public torch::nn::Module {
 public:
  Attention(const HfConfig& c, const at::TensorOptions& options, bool nf4)
      : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
    const bool qkv_bias = c.attention_bias || c.qkv_bias;
    q_proj = register_module(
        "q_proj",
        std::make_shared<Projection>(c.hidden_size, heads_ * head_dim_, qkv_bias, options, nf4));
    k_proj = register_module(
        "k_proj",
        std::make_shared<Projection>(c.hidden_size, kv_heads_ * head_dim_, qkv_bias, options, nf4));
    v_proj = register_module(
        "v_proj",
        std::make_shared<Projection>(c.hidden_size, kv_heads_ * head_dim_, qkv_bias, options, nf4));
    o_proj =
        register_module("o_proj", std::make_shared<Projection>(heads_ * head_dim_, c.hidden_size,
                                                               c.attention_bias, options, nf4));
    if (c.qk_norm) {
      q_norm =
          register_module("q_norm", std::make_shared<RmsNorm>(head_dim_, c.rms_norm_eps, options));
      k_norm =
          register_module("k_norm", std::make_shared<RmsNorm>(head_dim_, c.rms_norm_eps, options));
    }
  }

  /// With `cache`: k and v are appended to layer `index`'s entries and q attends to all.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const AttentionInputs& attention, KvCache* cache = nullptr, size_t index = 0) {
    // x [B, T, hidden]; cos/sin [B, T, D]
    const int64_t b = x.size(0), t = x.size(1);
    // One read of x for the three projections' LoRA A factors.
    auto qkv = projectShared(x, {q_proj.get(), k_proj.get(), v_proj.get()});
    auto q = qkv[0].view({b, t, heads_, head_dim_});     // [B, T, Hq, D]
    auto k = qkv[1].view({b, t, kv_heads_, head_dim_});  // [B, T, Hkv, D]
    auto v = qkv[2].view({b, t, kv_heads_, head_dim_});  // [B, T, Hkv, D]
    if (q_norm) {
      q = q_norm->forward(q);
      k = k_norm->forward(k);
    }
    const auto c = cos.unsqueeze(2), s = sin.unsqueeze(2);  // [B, T, 1, D]
    q = q * c + rotateHalf(q) * s;
    k = k * c + rotateHalf(k) * s;
    if (cache) {
      if (cache->keys.size() <= index) {
        cache->keys.resize(index + 1);
        cache->values.resize(index + 1);
      }
      if (cache->keys[index].defined()) {
        k = at::cat({cache->keys[index], k}, 1);
        v = at::cat({cache->values[index], v}, 1);
      }
      cache->keys[index] = k;
      cache->values[index] = v;
    }
    auto out = attend(attention, q, k, v, 1.0 / std::sqrt(static_cast<double>(head_dim_)));
    return o_proj->forward(out.reshape({b, t, heads_ * head_dim_}));  // [B, T, Hq * D]
  }

  std::shared_ptr<Projection> q_proj, k_proj, v_proj, o_proj;
  std::shared_ptr<RmsNorm> q_norm, k_norm;

 private:
  int64_t heads_, kv_heads_, head_dim_;
};

class Mlp : public torch::nn::Module {
 public:
  Mlp(const HfConfig& c, const at::TensorOptions& options, bool nf4) {
    const bool bias = c.mlp_bias;
    gate_proj = register_module(
        "gate_proj",
        std::make_shared<Projection>(c.hidden_size, c.intermediate_size, bias, options, nf4));
    up_proj = register_module(
        "up_proj",
        std::make_shared<Projection>(c.hidden_size, c.intermediate_size, bias, options, nf4));
    down_proj = register_module(
        "down_proj",
        std::make_shared<Projection>(c.intermediate_size, c.hidden_size, bias, options, nf4));
  }
  at::Tensor forward(const at::Tensor& x) {
    auto gate_up = projectShared(x, {gate_proj.get(), up_proj.get()});
    return down_proj->forward(swiglu(gate_up[0], gate_up[1]));
  }
  std::shared_ptr<Projection> gate_proj, up_proj, down_proj;
};

class DecoderLayer : public torch::nn::Module {
 public:
  DecoderLayer(const HfConfig& c, const at::TensorOptions& options, bool nf4) {
    input_layernorm = register_module(
        "input_layernorm", std::make_shared<RmsNorm>(c.hidden_size, c.rms_norm_eps, options));
    self_attn = register_module("self_attn", std::make_shared<Attention>(c, options, nf4));
    post_attention_layernorm =
        register_module("post_attention_layernorm",
                        std::make_shared<RmsNorm>(c.hidden_size, c.rms_norm_eps, options));
    mlp = register_module("mlp", std::make_shared<Mlp>(c, options, nf4));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const AttentionInputs& attention, KvCache* cache = nullptr, size_t index = 0) {
    auto h = x + self_attn->forward(input_layernorm->forward(x), cos, sin, attention, cache, index);
    return h + mlp->forward(post_attention_layernorm->forward(h));
  }
  std::shared_ptr<RmsNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<Attention> self_attn;
  std::shared_ptr<Mlp> mlp;
};

/// `model.*` of a *ForCausalLM: embed_tokens, layers.N, norm.
class DecoderBody : public torch::nn::Module {
 public:
  DecoderBody(const HfConfig& c, const at::TensorOptions& options, bool nf4) {
    embed_tokens = register_module("embed_tokens", std::make_shared<WeightHolder>(at::empty(
                                                       {c.vocab_size, c.hidden_size}, options)));
    auto list = register_module("layers", std::make_shared<torch::nn::Module>("layers"));
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      layers.push_back(list->register_module(std::to_string(i),
                                             std::make_shared<DecoderLayer>(c, options, nf4)));
    }
    norm =
        register_module("norm", std::make_shared<RmsNorm>(c.hidden_size, c.rms_norm_eps, options));
  }
  std::shared_ptr<WeightHolder> embed_tokens;
  std::vector<std::shared_ptr<DecoderLayer>> layers;
  std::shared_ptr<RmsNorm> norm;
};

// ---------------------------------------------------------------------------------------------
// Activation checkpointing. libtorch has no torch.utils.checkpoint: this is its reentrant
// variant. Forward runs the layer without a graph; backward re-runs it with the RNG state of
// the forward (LoRA dropout draws the same mask) and back-propagates through the recomputed
// graph, which accumulates the layer's parameter gradients and yields the input gradient.

class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin,
                            const AttentionInputs* attention, DecoderLayer* layer) {
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    auto gen = at::globalContext().defaultGenerator(x.device());
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      ctx->saved_data["rng"] = gen.get_state();
    }
    ctx->save_for_backward({x, cos, sin});
    // The attention inputs outlive the forward call only through what is saved here.
    ctx->saved_data["attention"] = static_cast<int64_t>(attention->backend);
    if (attention->mask.defined()) ctx->saved_data["mask"] = attention->mask;
    if (attention->cu_seqlens.defined()) ctx->saved_data["cu_seqlens"] = attention->cu_seqlens;
    ctx->saved_data["max_seqlen"] = attention->max_seqlen;
    at::NoGradGuard no_grad;
    return layer->forward(x, cos, sin, *attention);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto* layer = reinterpret_cast<DecoderLayer*>(ctx->saved_data["layer"].toInt());
    const auto saved = ctx->get_saved_variables();
    auto x = saved[0].detach().requires_grad_(true);
    AttentionInputs attention;
    attention.backend = static_cast<AttentionBackend>(ctx->saved_data["attention"].toInt());
    if (ctx->saved_data.count("mask")) attention.mask = ctx->saved_data["mask"].toTensor();
    if (ctx->saved_data.count("cu_seqlens")) {
      attention.cu_seqlens = ctx->saved_data["cu_seqlens"].toTensor();
    }
    attention.max_seqlen = ctx->saved_data["max_seqlen"].toInt();
    auto gen = at::globalContext().defaultGenerator(x.device());
    at::Tensor rng_now;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      rng_now = gen.get_state();
      gen.set_state(ctx->saved_data["rng"].toTensor());
    }
    at::Tensor out;
    {
      at::AutoGradMode enable_grad(true);
      out = layer->forward(x, saved[1], saved[2], attention);
    }
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng_now);
    }
    torch::autograd::backward({out}, {grad_out[0]});
    return {x.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Projection

Projection::Projection(int64_t in_features, int64_t out_features, bool bias,
                       const at::TensorOptions& options, bool quantized)
    : in_features_(in_features),
      out_features_(out_features),
      options_(options),
      quantized_(quantized) {
  if (!quantized_) {
    weight_ = register_parameter("weight", at::empty({out_features, in_features}, options));
  }
  // A quantized layer's bias is frozen like its weight (QLoRA trains adapters only).
  if (bias) bias_ = register_parameter("bias", at::zeros({out_features}, options), !quantized_);
}

void Projection::setNf4(Nf4Weight weight) {
  LOOM_CHECK(quantized_, "setNf4 on a projection that is not quantized");
  LOOM_CHECK(weight.shape == std::vector<int64_t>({out_features_, in_features_}),
             "NF4 weight of shape " << at::IntArrayRef(weight.shape) << " for a projection ["
                                    << out_features_ << ", " << in_features_ << "]");
  LOOM_CHECK(weight.device() == options_.device(),
             "NF4 weight on " << weight.device() << " for a projection on " << options_.device());
  nf4_ = std::move(weight);
}

at::Tensor Projection::baseForward(const at::Tensor& x) {
  if (quantized_) {
    LOOM_CHECK(nf4_.packed.defined(), "NF4 projection used before its weight was loaded");
    return nf4Linear(x, nf4_, bias_);
  }
  return at::linear(x, weight_, bias_);
}

bool Projection::loraWithoutDropout() const {
  return hasLora() && (lora_dropout_ == 0.0 || !is_training());
}

at::Tensor Projection::forward(const at::Tensor& x) {
  if (loraWithoutDropout()) return projectShared(x, {this})[0];
  at::Tensor y = baseForward(x);  // [..., out]
  if (!lora_a_.defined()) return y;
  // PEFT: x is cast to the adapter dtype, the branch is added to the base result (promoting
  // to the wider dtype) and the sum is cast back to the base result's dtype.
  auto xl = x.to(lora_a_.scalar_type());
  if (lora_dropout_ > 0.0 && is_training()) xl = at::dropout(xl, lora_dropout_, /*train=*/true);
  auto delta = at::linear(at::linear(xl, lora_a_), lora_b_) * lora_scaling_;  // [..., out]
  return (y + delta).to(y.scalar_type());
}

std::vector<at::Tensor> projectShared(const at::Tensor& x, const std::vector<Projection*>& projs) {
  // x [..., in]
  std::vector<at::Tensor> out(projs.size());
  std::vector<size_t> fused;  // projections whose branch runs here
  for (size_t i = 0; i < projs.size(); ++i) {
    if (projs[i]->loraWithoutDropout()) {
      fused.push_back(i);
      out[i] = projs[i]->baseForward(x);
    } else {
      out[i] = projs[i]->forward(x);  // no LoRA, or PEFT's own dropout mask per projection
    }
  }
  if (fused.empty()) return out;
  const auto dtype = out[fused[0]].scalar_type();  // the base result's: the compute dtype
  const bool narrow = dtype != projs[fused[0]]->loraA().scalar_type();
  if (fused.size() == 1 && !narrow) {
    // fp32 everywhere: PEFT's order of operations exactly.
    Projection& p = *projs[fused[0]];
    auto delta = at::linear(at::linear(x, p.loraA()), p.loraB()) * p.loraScaling();
    out[fused[0]] = (out[fused[0]] + delta).to(dtype);
    return out;
  }
  // The A factors of every fused projection in one product, so x is read once:
  // [..., r1 + r2 + ...]. In the compute dtype: the projections' 16-bit copies (trained
  // with the fp32 factors as masters), or else the fp32 factors cast in the graph (their
  // gradients return to the fp32 parameters). Either way the same values and gradients.
  auto factor = [dtype](const at::Tensor& copy, const at::Tensor& weight) {
    return copy.defined() && copy.scalar_type() == dtype ? copy : weight;
  };
  std::vector<at::Tensor> as;
  for (size_t i : fused) as.push_back(factor(projs[i]->loraComputeA(), projs[i]->loraA()));
  const auto a = (as.size() == 1 ? as[0] : at::cat(as, 0)).to(dtype);  // [sum r, in]
  const auto xa = at::linear(x.to(dtype), a);                          // [..., sum r]
  const int64_t rows = xa.numel() / xa.size(-1);
  int64_t from = 0;
  for (size_t i : fused) {
    Projection& p = *projs[i];
    const int64_t r = p.loraA().size(0);
    const auto xa_i = xa.reshape({rows, xa.size(-1)}).slice(1, from, from + r);  // [N, r]
    from += r;
    auto y = out[i].reshape({rows, p.outFeatures()});  // [N, out]
    // y + scaling * xa_i B^T in one kernel.
    const auto b = factor(p.loraComputeB(), p.loraB()).to(dtype);  // [out, r]
    y = at::addmm(y, xa_i, b.t(), /*beta=*/1, /*alpha=*/p.loraScaling());
    out[i] = y.view(out[i].sizes());
  }
  return out;
}

void Projection::enableLora(int64_t rank, double scaling, double dropout,
                            at::ScalarType lora_dtype) {
  LOOM_CHECK(!hasLora(), "LoRA is already enabled on this projection");
  LOOM_CHECK(rank > 0, "LoRA rank must be positive, got " << rank);
  const auto options = options_.dtype(lora_dtype);
  auto a = at::empty({rank, in_features_}, options);
  {
    at::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(a, std::sqrt(5.0));
  }
  auto b = at::zeros({out_features_, rank}, options);
  lora_a_ = register_module("lora_A", std::make_shared<detail::WeightHolder>(a))->weight;
  lora_b_ = register_module("lora_B", std::make_shared<detail::WeightHolder>(b))->weight;
  lora_scaling_ = scaling;
  lora_dropout_ = dropout;
}

void Projection::makeLoraComputeCopies(at::ScalarType dtype) {
  LOOM_CHECK(hasLora(), "makeLoraComputeCopies: the projection has no LoRA branch");
  LOOM_CHECK(lora_dropout_ == 0.0,
             "makeLoraComputeCopies: the branch draws dropout, whose path "
             "computes in the adapter dtype");
  LOOM_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf,
             "makeLoraComputeCopies: " << dtype << " is not a 16-bit dtype");
  at::NoGradGuard no_grad;
  compute_a_ = lora_a_.detach().to(dtype).requires_grad_(true);
  compute_b_ = lora_b_.detach().to(dtype).requires_grad_(true);
}

void Projection::mergeLora() {
  if (!hasLora()) return;
  LOOM_CHECK(!quantized_, "cannot merge LoRA into an NF4 weight: merge into the 16-bit base");
  {
    at::NoGradGuard no_grad;
    auto delta = at::matmul(lora_b_.to(at::kFloat), lora_a_.to(at::kFloat)) * lora_scaling_;
    weight_.copy_(weight_.to(at::kFloat) + delta.to(weight_.device()));
  }
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_a_ = at::Tensor();
  lora_b_ = at::Tensor();
  compute_a_ = at::Tensor();
  compute_b_ = at::Tensor();
  lora_scaling_ = 0.0;
  lora_dropout_ = 0.0;
}

// ---------------------------------------------------------------------------------------------
// Rotary tables

at::Tensor ropeInverseFrequencies(const HfConfig& config) {
  const int64_t dim = config.head_dim;
  auto exponent = at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                  static_cast<double>(dim);
  // Python's `1.0 / (base ** x)` is pow(base, x).reciprocal() * 1.0; keep that op order.
  auto inv_freq = at::pow(at::Scalar(config.rope_theta), exponent).reciprocal();
  if (config.rope_scaling.kind != "llama3") return inv_freq;

  const auto& rs = config.rope_scaling;
  const double old_context = static_cast<double>(rs.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / rs.low_freq_factor;
  const double high_freq_wavelen = old_context / rs.high_freq_factor;
  auto wavelen = inv_freq.reciprocal() * (2 * M_PI);
  auto scaled = at::where(wavelen > low_freq_wavelen, inv_freq / rs.factor, inv_freq);
  auto smooth = (wavelen.reciprocal() * old_context - rs.low_freq_factor) /
                (rs.high_freq_factor - rs.low_freq_factor);
  auto smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
  auto is_medium =
      (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
  return at::where(is_medium, smoothed, scaled);
}

// ---------------------------------------------------------------------------------------------
// CausalLm

CausalLm::CausalLm(HfConfig config, DecoderOptions options)
    : config_(std::move(config)), options_(options) {
  const auto topt = at::TensorOptions().dtype(options_.dtype).device(options_.device);
  body_ = register_module("model",
                          std::make_shared<detail::DecoderBody>(config_, topt, options_.nf4_base));
  if (!config_.tie_word_embeddings) {
    lm_head_ = register_module(
        "lm_head",
        std::make_shared<Projection>(config_.hidden_size, config_.vocab_size, false, topt));
  }
  inv_freq_ = ropeInverseFrequencies(config_).to(options_.device);
}

at::Tensor CausalLm::lmHeadWeight() const {
  return lm_head_ ? lm_head_->weight() : body_->embed_tokens->weight;
}

at::Tensor CausalLm::logits(const at::Tensor& hidden) {
  return lm_head_ ? lm_head_->forward(hidden) : at::linear(hidden, body_->embed_tokens->weight);
}

at::Tensor CausalLm::hidden(const DecoderInput& input) {
  const auto& tokens = input.tokens;  // [B, T]
  LOOM_CHECK(tokens.dim() == 2, "tokens must be [B, T], got " << tokens.sizes());
  const int64_t b = tokens.size(0), t = tokens.size(1);
  const auto device = options_.device;
  auto positions = input.positions.defined()
                       ? input.positions.to(device)
                       : at::arange(t, at::TensorOptions().dtype(at::kLong).device(device))
                             .unsqueeze(0)
                             .expand({b, t});  // [B, T]
  LOOM_CHECK(positions.sizes() == tokens.sizes(),
             "positions " << positions.sizes() << " must match tokens " << tokens.sizes());
  if (input.documents.defined()) {
    LOOM_CHECK(input.documents.sizes() == tokens.sizes(),
               "documents " << input.documents.sizes() << " must match tokens " << tokens.sizes());
  }
  // Made once, shared by every layer: the mask, or the varlen kernels' document lengths.
  const AttentionInputs attention =
      input.cache ? extendCache(*input.cache, input, b, t)
                  : prepareAttention(options_.attention, input.documents, input.cu_seqlens,
                                     input.max_seqlen, input.one_document_per_row, device);

  auto x = at::embedding(body_->embed_tokens->weight, tokens.to(device));  // [B, T, hidden]
  // Like transformers' rotary embedding: fp32 angles, tables cast to the activation dtype.
  auto freqs = positions.unsqueeze(-1).to(at::kFloat) * inv_freq_;  // [B, T, D/2]
  auto emb = at::cat({freqs, freqs}, -1);                           // [B, T, D]
  auto cos = emb.cos().to(x.scalar_type());
  auto sin = emb.sin().to(x.scalar_type());

  const bool checkpoint = options_.activation_checkpointing && at::GradMode::is_enabled();
  if (checkpoint && !x.requires_grad()) {
    // A checkpointed layer is only back-propagated through if its input needs a gradient;
    // with a frozen embedding (LoRA) the first layer's input would not, and its adapters
    // would silently get no gradient.
    x = x.detach().requires_grad_(true);
  }
  for (size_t i = 0; i < body_->layers.size(); ++i) {
    auto& layer = body_->layers[i];
    x = checkpoint ? detail::CheckpointedLayer::apply(x, cos, sin, &attention, layer.get())
                   : layer->forward(x, cos, sin, attention, input.cache, i);
  }
  return body_->norm->forward(x);
}

AttentionInputs CausalLm::extendCache(KvCache& cache, const DecoderInput& input, int64_t b,
                                      int64_t t) const {
  LOOM_CHECK(!input.documents.defined(), "a KV cache decodes rows of one sequence each");
  const auto device = options_.device;
  const auto flags = at::TensorOptions().dtype(at::kBool).device(device);
  const at::Tensor real =
      input.real.defined() ? input.real.to(device, at::kBool) : at::ones({b, t}, flags);
  LOOM_CHECK(real.sizes() == at::IntArrayRef({b, t}),
             "real " << real.sizes() << " must be [B, T] = [" << b << ", " << t << "]");
  const int64_t past = cache.length();
  cache.real = past == 0 ? real : at::cat({cache.real, real}, 1);  // [B, S]
  const int64_t s = past + t;
  // Query i (at absolute place past + i) sees key j <= past + i that is a token.
  const auto queries = at::arange(past, s, at::TensorOptions().dtype(at::kLong).device(device));
  const auto keys = at::arange(s, at::TensorOptions().dtype(at::kLong).device(device));
  at::Tensor mask = (keys.unsqueeze(0) <= queries.unsqueeze(1)).unsqueeze(0) &
                    cache.real.unsqueeze(1);  // [B, T, S]
  // A padding query sees nothing; as transformers does (_unmask_unattended), it sees every key
  // instead, so that its (unused) output stays finite and cannot poison later layers.
  mask = mask | mask.any(-1, /*keepdim=*/true).logical_not();
  AttentionInputs in;
  in.backend = AttentionBackend::kMask;
  in.mask = mask.unsqueeze(1);  // [B, 1, T, S]
  return in;
}

std::vector<std::pair<std::string, Projection*>> CausalLm::projections() {
  std::vector<std::pair<std::string, Projection*>> out;
  for (size_t i = 0; i < body_->layers.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto& l = body_->layers[i];
    out.emplace_back(p + "self_attn.q_proj", l->self_attn->q_proj.get());
    out.emplace_back(p + "self_attn.k_proj", l->self_attn->k_proj.get());
    out.emplace_back(p + "self_attn.v_proj", l->self_attn->v_proj.get());
    out.emplace_back(p + "self_attn.o_proj", l->self_attn->o_proj.get());
    out.emplace_back(p + "mlp.gate_proj", l->mlp->gate_proj.get());
    out.emplace_back(p + "mlp.up_proj", l->mlp->up_proj.get());
    out.emplace_back(p + "mlp.down_proj", l->mlp->down_proj.get());
  }
  return out;
}

void CausalLm::initRandom(double std) {
  at::NoGradGuard no_grad;
  for (auto& item : named_parameters(/*recurse=*/true)) {
    const auto& name = item.key();
    auto& p = item.value();
    if (name.find(".lora_") != std::string::npos) continue;
    const bool is_norm = name.find("norm.weight") != std::string::npos;
    const bool is_bias = endsWith(name, ".bias");
    if (is_norm) {
      p.fill_(1.0);
    } else if (is_bias) {
      p.zero_();
    } else {
      p.normal_(0.0, std);
    }
  }
  for (auto& [path, proj] : projections()) {
    if (!proj->quantized()) continue;
    auto w = at::empty({proj->outFeatures(), proj->inFeatures()}, at::kFloat).normal_(0.0, std);
    proj->setNf4(quantizeNf4(w).to(options_.device));
  }
}

}  // namespace loom

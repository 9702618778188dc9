#include "loom/model/loss.hpp"

#include <torch/torch.h>

#include "loom/core/error.hpp"

namespace loom {
namespace detail {

/// Cross-entropy sum whose gradients are made in forward, chunk by chunk, while each chunk's
/// logits exist (as fused linear cross-entropy does): backward only scales them, so the
/// lm_head product is never recomputed. The gradients are those of `grad_scale * sum`
/// (the loss scale the caller will back-propagate with), so fp16 softmax differences are
/// scaled before they are rounded, as they would be in autograd; backward multiplies by
/// grad_out / grad_scale, exactly 1 in the usual case.
class ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& weight, const at::Tensor& targets, int64_t chunk,
                            double grad_scale, bool want_h, bool want_w) {
    // hidden [M, H], weight [V, H], targets [M]
    at::NoGradGuard no_grad;
    const int64_t m = hidden.size(0);
    auto total = at::zeros({}, hidden.options().dtype(at::kFloat));
    at::Tensor grad_h, grad_w;
    if (want_h) grad_h = at::empty_like(hidden);                                         // [M, H]
    if (want_w) grad_w = at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));  // [V, H]
    for (int64_t s = 0; s < m; s += chunk) {
      const int64_t e = std::min(m, s + chunk);
      auto h = hidden.slice(0, s, e);                          // [c, H]
      auto t = targets.slice(0, s, e).unsqueeze(1);            // [c, 1]
      auto logits = at::matmul(h, weight.t()).to(at::kFloat);  // [c, V]
      auto lse = at::logsumexp(logits, -1, /*keepdim=*/true);  // [c, 1]
      total += (lse.squeeze(1) - logits.gather(1, t).squeeze(1)).sum();
      if (!want_h && !want_w) continue;
      // In place from the fp32 logits on: one [c, V] fp32 buffer per chunk at a time.
      auto d = logits.sub_(lse).exp_();                               // softmax
      d.scatter_add_(1, t, at::full({e - s, 1}, -1.0, d.options()));  // softmax - onehot
      if (grad_scale != 1.0) d.mul_(grad_scale);
      // The gradient crosses the fp32 upcast of the logits back into the model dtype, as
      // it does in transformers' autograd graph.
      auto d_model = d.to(hidden.scalar_type());  // [c, V]
      if (want_h) {
        auto rows = grad_h.slice(0, s, e);
        at::matmul_out(rows, d_model, weight);
      }
      if (want_w) grad_w.add_(at::matmul(d_model.t(), h).to(at::kFloat));
    }
    if (want_h) ctx->saved_data["grad_h"] = grad_h;
    if (want_w) ctx->saved_data["grad_w"] = grad_w;
    ctx->saved_data["grad_scale"] = grad_scale;
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    at::NoGradGuard no_grad;
    // A device scalar: no host synchronisation. Exactly 1.0 when grad_out == grad_scale.
    const auto ratio = grad_out[0].to(at::kFloat) / ctx->saved_data["grad_scale"].toDouble();
    at::Tensor grad_h, grad_w;
    // The saved gradients are scaled in place and handed over: one backward per forward.
    const bool want_h = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    const auto h = ctx->saved_data.find("grad_h");
    const auto w = ctx->saved_data.find("grad_w");
    LOOM_CHECK(!want_h || h != ctx->saved_data.end(), "chunked cross-entropy: backward twice");
    LOOM_CHECK(!want_w || w != ctx->saved_data.end(), "chunked cross-entropy: backward twice");
    if (want_h) grad_h = h->second.toTensor().mul_(ratio);
    if (want_w) {
      const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["weight_dtype"].toInt());
      grad_w = w->second.toTensor().mul_(ratio).to(dtype);
    }
    ctx->saved_data.clear();
    return {grad_h, grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace detail

NextTokenTargets nextTokenTargets(const at::Tensor& tokens, const at::Tensor& loss_mask,
                                  const at::Tensor& documents) {
  LOOM_CHECK(tokens.dim() == 2, "tokens must be [B, T], got " << tokens.sizes());
  LOOM_CHECK(loss_mask.sizes() == tokens.sizes(),
             "loss_mask " << loss_mask.sizes() << " must match tokens " << tokens.sizes());
  const int64_t b = tokens.size(0), t = tokens.size(1);
  auto valid = at::zeros({b, t}, tokens.options().dtype(at::kBool));  // [B, T]
  auto next = tokens.to(at::kLong).roll(-1, 1);                       // [B, T] tokens[t+1]
  if (t > 1) {
    auto target_is_loss = loss_mask.slice(1, 1).ne(0);  // [B, T-1]
    if (documents.defined()) {
      LOOM_CHECK(documents.sizes() == tokens.sizes(),
                 "documents " << documents.sizes() << " must match tokens " << tokens.sizes());
      target_is_loss = target_is_loss & documents.slice(1, 1).eq(documents.slice(1, 0, t - 1));
    }
    valid.slice(1, 0, t - 1).copy_(target_is_loss);
  }
  NextTokenTargets out;
  out.positions = valid.reshape({-1}).nonzero().squeeze(1);         // [M]
  out.targets = next.reshape({-1}).index_select(0, out.positions);  // [M]
  return out;
}

at::Tensor chunkedCrossEntropySum(const at::Tensor& hidden, const at::Tensor& weight,
                                  const at::Tensor& targets, int64_t chunk_tokens,
                                  double grad_scale) {
  LOOM_CHECK(chunk_tokens > 0, "chunk_tokens must be positive, got " << chunk_tokens);
  LOOM_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
             "hidden " << hidden.sizes() << " and weight " << weight.sizes() << " do not match");
  LOOM_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0),
             "targets " << targets.sizes() << " must be [" << hidden.size(0) << "]");
  LOOM_CHECK(grad_scale > 0.0, "grad_scale must be positive, got " << grad_scale);
  const bool grad = at::GradMode::is_enabled();
  return detail::ChunkedCrossEntropy::apply(hidden, weight, targets.to(at::kLong), chunk_tokens,
                                            grad_scale, grad && hidden.requires_grad(),
                                            grad && weight.requires_grad());
}

LossSum causalLmLoss(const at::Tensor& hidden, const at::Tensor& lm_head_weight,
                     const at::Tensor& tokens, const at::Tensor& loss_mask,
                     const at::Tensor& documents, int64_t chunk_tokens, double grad_scale) {
  const auto device = hidden.device();
  return causalLmLoss(hidden, lm_head_weight,
                      nextTokenTargets(tokens.to(device), loss_mask.to(device),
                                       documents.defined() ? documents.to(device) : documents),
                      chunk_tokens, grad_scale);
}

LossSum causalLmLoss(const at::Tensor& hidden, const at::Tensor& lm_head_weight,
                     const NextTokenTargets& targets, int64_t chunk_tokens, double grad_scale) {
  // hidden [B, T, H]; only the rows that predict a target are projected.
  auto h = hidden.reshape({-1, hidden.size(-1)}).index_select(0, targets.positions);  // [M, H]
  LossSum out;
  out.count = targets.positions.size(0);
  out.sum = chunkedCrossEntropySum(h, lm_head_weight, targets.targets, chunk_tokens, grad_scale);
  return out;
}

}  // namespace loom

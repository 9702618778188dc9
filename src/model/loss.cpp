#include "loom/model/loss.hpp"

#include <torch/torch.h>

#include "loom/core/error.hpp"

namespace loom {
namespace detail {

/// Cross-entropy sum whose backward recomputes each chunk's logits instead of keeping them.
class ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& weight, const at::Tensor& targets, int64_t chunk) {
    // hidden [M, H], weight [V, H], targets [M]
    at::NoGradGuard no_grad;
    const int64_t m = hidden.size(0);
    auto lse = at::empty({m}, hidden.options().dtype(at::kFloat));  // [M] log-sum-exp
    auto total = at::zeros({}, hidden.options().dtype(at::kFloat));
    for (int64_t s = 0; s < m; s += chunk) {
      const int64_t e = std::min(m, s + chunk);
      auto logits = at::matmul(hidden.slice(0, s, e), weight.t()).to(at::kFloat);      // [c, V]
      auto l = at::logsumexp(logits, -1);                                              // [c]
      auto picked = logits.gather(1, targets.slice(0, s, e).unsqueeze(1)).squeeze(1);  // [c]
      total += (l - picked).sum();
      lse.slice(0, s, e).copy_(l);
    }
    ctx->save_for_backward({hidden, weight, targets, lse});
    ctx->saved_data["chunk"] = chunk;
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const auto &hidden = saved[0], &weight = saved[1], &targets = saved[2], &lse = saved[3];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const bool want_h = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    const int64_t m = hidden.size(0);
    const auto g = grad_out[0].to(at::kFloat);  // scalar
    at::Tensor grad_h, grad_w;
    if (want_h) grad_h = at::empty_like(hidden);
    if (want_w) grad_w = at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));
    at::NoGradGuard no_grad;
    for (int64_t s = 0; s < m && (want_h || want_w); s += chunk) {
      const int64_t e = std::min(m, s + chunk);
      auto h = hidden.slice(0, s, e);  // [c, H]
      // In place from the fp32 logits on: one [c, V] fp32 buffer per chunk at a time.
      auto d = at::matmul(h, weight.t()).to(at::kFloat);  // [c, V] logits
      d.sub_(lse.slice(0, s, e).unsqueeze(1)).exp_();     // softmax
      d.scatter_add_(1, targets.slice(0, s, e).unsqueeze(1),
                     at::full({e - s, 1}, -1.0, d.options()));  // softmax - onehot
      d.mul_(g);
      // The gradient crosses the fp32 upcast of the logits back into the model dtype, as
      // it does in transformers' autograd graph.
      auto d_model = d.to(hidden.scalar_type());  // [c, V]
      if (want_h) grad_h.slice(0, s, e).copy_(at::matmul(d_model, weight));
      if (want_w) grad_w += at::matmul(d_model.t(), h).to(at::kFloat);
    }
    return {grad_h, want_w ? grad_w.to(weight.scalar_type()) : at::Tensor(), at::Tensor(),
            at::Tensor()};
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
                                  const at::Tensor& targets, int64_t chunk_tokens) {
  LOOM_CHECK(chunk_tokens > 0, "chunk_tokens must be positive, got " << chunk_tokens);
  LOOM_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
             "hidden " << hidden.sizes() << " and weight " << weight.sizes() << " do not match");
  LOOM_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0),
             "targets " << targets.sizes() << " must be [" << hidden.size(0) << "]");
  return detail::ChunkedCrossEntropy::apply(hidden, weight, targets.to(at::kLong), chunk_tokens);
}

LossSum causalLmLoss(const at::Tensor& hidden, const at::Tensor& lm_head_weight,
                     const at::Tensor& tokens, const at::Tensor& loss_mask,
                     const at::Tensor& documents, int64_t chunk_tokens) {
  // hidden [B, T, H]
  const auto device = hidden.device();
  auto sel = nextTokenTargets(tokens.to(device), loss_mask.to(device),
                              documents.defined() ? documents.to(device) : documents);
  auto h = hidden.reshape({-1, hidden.size(-1)}).index_select(0, sel.positions);  // [M, H]
  LossSum out;
  out.count = sel.positions.size(0);
  out.sum = chunkedCrossEntropySum(h, lm_head_weight, sel.targets, chunk_tokens);
  return out;
}

}  // namespace loom

#include "loom/model/fused_ops.hpp"

#include <torch/torch.h>

namespace loom {

namespace {

class SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate,
                            const at::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return at::silu(gate) * up;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& gate = saved[0];
    const at::Tensor& up = saved[1];
    const at::Tensor& dy = grads[0];
    // What autograd computes for the composition: mul's backward (dy * up, dy * silu(gate)),
    // then silu's backward on the first.
    at::Tensor d_gate, d_up;
    if (ctx->needs_input_grad(0)) d_gate = at::silu_backward(dy * up, gate);
    if (ctx->needs_input_grad(1)) d_up = dy * at::silu(gate);
    return {d_gate, d_up};
  }
};

}  // namespace

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  if (!at::GradMode::is_enabled() || !(gate.requires_grad() || up.requires_grad())) {
    return at::silu(gate) * up;
  }
  return SwiGluFunction::apply(gate, up);
}

at::Tensor rmsNormComposite(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const auto input_dtype = x.scalar_type();
  auto h = x.to(at::kFloat);
  auto variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(input_dtype);
}

at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (x.is_cuda() && weight.scalar_type() == x.scalar_type()) {
    return at::rms_norm(x, {x.size(-1)}, weight, eps);
  }
  return rmsNormComposite(x, weight, eps);
}

}  // namespace loom

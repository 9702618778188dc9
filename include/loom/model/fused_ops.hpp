#pragma once
// Element-wise pieces of the decoder layer written so that autograd keeps less for backward
// or runs fewer kernels than the plain composition of ops, each equal to that composition:
//
//   swiglu(gate, up) = silu(gate) * up. The composition keeps gate, silu(gate) and up for
//     backward; this keeps gate and up and recomputes silu(gate) in backward: one
//     [tokens, intermediate] tensor less per layer for one more element-wise kernel. The
//     same ops on the same values, so values and gradients are bit-identical.
//   rmsNorm(x, weight, eps): transformers' LlamaRMSNorm / Qwen3RMSNorm (normalise in fp32,
//     cast back to x's dtype, scale by the weight). On CUDA torch's fused kernel
//     (at::rms_norm, _fused_rms_norm: one kernel each way, keeping x in its own dtype and one
//     fp32 rstd per row, where the composition keeps fp32 copies); it rounds once where
//     transformers rounds twice, so it agrees to one rounding of the dtype. Elsewhere the
//     composition (on CPU the fused op is itself a composition, and slower).

#include <ATen/core/Tensor.h>

namespace loom {

/// silu(gate) * up with gate and up kept for backward (not silu(gate)).
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

/// RMSNorm over the last dimension: torch's fused kernel on CUDA (when the weight has x's
/// dtype), else rmsNormComposite.
at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// transformers' order of operations: weight * (x_fp32 * rsqrt(mean(x_fp32^2) + eps)).to(x).
at::Tensor rmsNormComposite(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace loom

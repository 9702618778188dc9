#include "loom/model/attention.hpp"

#include <ATen/ATen.h>

#include <vector>

#include "loom/core/error.hpp"

namespace loom {

std::string toString(AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::kAuto:
      return "auto";
    case AttentionBackend::kFlashVarlen:
      return "flash-attention varlen";
    case AttentionBackend::kEfficientVarlen:
      return "memory-efficient varlen";
    case AttentionBackend::kSdpaCausal:
      return "SDPA causal";
    case AttentionBackend::kMask:
      return "SDPA with a document mask";
  }
  return "?";
}

AttentionBackend packedAttentionFor(bool cuda, int cuda_major, at::ScalarType dtype,
                                    int64_t head_dim) {
  if (!cuda) return AttentionBackend::kMask;
  const bool half = dtype == at::kBFloat16 || dtype == at::kHalf;
  if (cuda_major >= 8 && half && head_dim <= 256 && head_dim % 8 == 0) {
    return AttentionBackend::kFlashVarlen;
  }
  return AttentionBackend::kEfficientVarlen;
}

std::pair<at::Tensor, int64_t> cuSeqlensOf(const at::Tensor& documents) {
  // documents [B, T]
  const auto host = documents.to(at::kCPU, at::kLong).contiguous();
  const int64_t b = host.size(0), t = host.size(1);
  const int64_t* d = host.data_ptr<int64_t>();
  std::vector<int32_t> cuts = {0};
  int64_t longest = 0;
  for (int64_t c = 1; c <= b * t; ++c) {
    if (c % t == 0 || d[c] != d[c - 1]) {
      longest = std::max<int64_t>(longest, c - cuts.back());
      cuts.push_back(static_cast<int32_t>(c));
    }
  }
  auto out = at::tensor(cuts, at::TensorOptions(at::kInt)).to(documents.device());
  return {out, longest};
}

at::Tensor packedCausalMask(const at::Tensor& documents) {
  // documents [B, T]
  const int64_t t = documents.size(1);
  auto same = documents.unsqueeze(2) == documents.unsqueeze(1);                 // [B, T, T]
  auto causal = at::ones({t, t}, documents.options().dtype(at::kBool)).tril();  // [T, T]
  return (same & causal).unsqueeze(1);                                          // [B, 1, T, T]
}

AttentionInputs prepareAttention(AttentionBackend packed, const at::Tensor& documents,
                                 const at::Tensor& cu_seqlens, int64_t max_seqlen,
                                 bool one_document_per_row, const c10::Device& device) {
  AttentionInputs in;
  if (!documents.defined() || one_document_per_row) return in;  // kSdpaCausal
  if (packed == AttentionBackend::kAuto) {
    packed = device.is_cuda() ? AttentionBackend::kEfficientVarlen : AttentionBackend::kMask;
  }
  LOOM_CHECK(packed != AttentionBackend::kSdpaCausal,
             "SDPA causal cannot keep packed documents apart");
  LOOM_CHECK(device.is_cuda() || packed == AttentionBackend::kMask,
             toString(packed) << " needs a CUDA device, not " << device);
  in.backend = packed;
  if (packed == AttentionBackend::kMask) {
    in.mask = packedCausalMask(documents.to(device));
  } else if (cu_seqlens.defined()) {
    in.cu_seqlens = cu_seqlens.to(device, at::kInt);
    in.max_seqlen = max_seqlen;
  } else {
    std::tie(in.cu_seqlens, in.max_seqlen) = cuSeqlensOf(documents);
    in.cu_seqlens = in.cu_seqlens.to(device);
  }
  return in;
}

at::Tensor attend(const AttentionInputs& in, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, double scale) {
  // q [B, T, Hq, D], k/v [B, T, Hkv, D]
  const int64_t b = q.size(0), t = q.size(1), hq = q.size(2), hkv = k.size(2), d = q.size(3);
  switch (in.backend) {
    case AttentionBackend::kSdpaCausal:
    case AttentionBackend::kMask: {
      // SDPA takes [B, H, T, D]; the transposes are views.
      const bool gqa = hq != hkv;
      auto out = at::scaled_dot_product_attention(
          q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
          in.backend == AttentionBackend::kMask ? std::optional<at::Tensor>(in.mask) : std::nullopt,
          0.0, /*is_causal=*/in.backend == AttentionBackend::kSdpaCausal, scale, gqa);
      return out.transpose(1, 2);  // [B, T, Hq, D]
    }
    case AttentionBackend::kFlashVarlen: {
      // The rows flattened into one stream of B * T tokens cut by cu_seqlens: [B*T, H, D].
      // Flash handles grouped-query heads itself.
      auto out = std::get<0>(at::_flash_attention_forward(
          q.reshape({b * t, hq, d}), k.reshape({b * t, hkv, d}), v.reshape({b * t, hkv, d}),
          in.cu_seqlens, in.cu_seqlens, in.max_seqlen, in.max_seqlen, /*dropout_p=*/0.0,
          /*is_causal=*/true, /*return_debug_mask=*/false, std::optional<double>(scale)));
      return out.view({b, t, hq, d});
    }
    case AttentionBackend::kEfficientVarlen: {
      // [1, B*T, H, D]; the kernel has no grouped-query heads: expand k and v.
      auto kk = k, vv = v;
      if (hq != hkv) {
        kk = k.repeat_interleave(hq / hkv, 2);
        vv = v.repeat_interleave(hq / hkv, 2);
      }
      auto out = std::get<0>(at::_efficient_attention_forward(
          q.reshape({1, b * t, hq, d}), kk.reshape({1, b * t, hq, d}),
          vv.reshape({1, b * t, hq, d}), /*bias=*/std::nullopt, in.cu_seqlens, in.cu_seqlens,
          in.max_seqlen, in.max_seqlen, /*dropout_p=*/0.0,
          /*custom_mask_type=*/1 /* causal from the top left of each sequence */,
          /*compute_log_sumexp=*/q.requires_grad() || k.requires_grad() || v.requires_grad(),
          scale));
      return out.view({b, t, hq, d});
    }
    case AttentionBackend::kAuto:
      break;
  }
  LOOM_CHECK(false, "attention backend not resolved");
  return {};
}

}  // namespace loom

#pragma once
// The attention room: one interface, several kernels, chosen per rank.
//
// A batch of rows [B, T] may pack several documents per row; a token attends to the tokens
// of its own document at or before it (causal AND same document), never across a boundary.
// The backends:
//   kFlashVarlen      flash-attention over the flattened rows with cumulative document
//                     lengths (cu_seqlens): no [T, T] anything, no work across documents.
//                     CUDA sm_80+, bf16/fp16, head_dim <= 256 and a multiple of 8.
//   kEfficientVarlen  the memory-efficient kernel with the same cu_seqlens (any CUDA GPU Loom
//                     runs on, Pascal included, fp32 allowed; grouped-query heads expanded).
//   kSdpaCausal       SDPA's causal path, exact when every row holds one document (padding
//                     after it is never a target and attends to nothing that matters).
//   kMask             SDPA with a [B, 1, T, T] boolean mask: the CPU's path for packed rows.
// Rows that hold one document each always take kSdpaCausal; the backend for packed rows is
// the rank's choice (packedAttentionFor), logged at start.
// Autograd supplies every backward (torch's derivatives of these ops).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace loom {

enum class AttentionBackend { kAuto, kFlashVarlen, kEfficientVarlen, kSdpaCausal, kMask };

std::string toString(AttentionBackend backend);

/// The backend for packed rows on a device: flash varlen on CUDA sm_80+ in bf16/fp16 with a
/// supported head_dim, else memory-efficient varlen on CUDA, else the mask (CPU).
/// `cuda_major`: the GPU's compute capability major (ignored for the CPU).
AttentionBackend packedAttentionFor(bool cuda, int cuda_major, at::ScalarType dtype,
                                    int64_t head_dim);

/// What every layer's attention needs for one batch, made once per forward.
struct AttentionInputs {
  AttentionBackend backend = AttentionBackend::kSdpaCausal;  ///< resolved, never kAuto
  at::Tensor mask;                                           ///< kMask: [B, 1, T, T] bool
  at::Tensor cu_seqlens;  ///< varlen: [S + 1] int32 on the device, over the B * T cells
  int64_t max_seqlen = 0;
};

/// Chooses and prepares: `documents` [B, T] (undefined: one document per row), `cu_seqlens`
/// [S + 1] int32 and `max_seqlen` from the batch layout (undefined: derived from documents
/// when a varlen backend needs them), `one_document_per_row` from the planner.
/// `packed`: the backend for packed rows (kAuto: kMask on the CPU, kEfficientVarlen on CUDA).
AttentionInputs prepareAttention(AttentionBackend packed, const at::Tensor& documents,
                                 const at::Tensor& cu_seqlens, int64_t max_seqlen,
                                 bool one_document_per_row, const c10::Device& device);

/// Attention of q [B, T, Hq, D] over k, v [B, T, Hkv, D] (Hq a multiple of Hkv), softmax
/// scale `scale`: [B, T, Hq, D].
at::Tensor attend(const AttentionInputs& inputs, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, double scale);

/// cu_seqlens [S + 1] int32 of documents [B, T] (a new sequence wherever the id changes or a
/// row ends) and the longest sequence; on the documents' device (one host transfer).
std::pair<at::Tensor, int64_t> cuSeqlensOf(const at::Tensor& documents);

/// The attention mask of the kMask path: [B, 1, T, T] bool, true where query i may attend
/// key j (j <= i and documents[i] == documents[j]).
at::Tensor packedCausalMask(const at::Tensor& documents);

}  // namespace loom

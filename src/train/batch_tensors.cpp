#include "loom/train/batch_tensors.hpp"

#include <ATen/ATen.h>

#include <algorithm>

namespace loom {

StagedBatch stage(const MicroBatch& mb, const c10::Device& device) {
  StagedBatch s;
  s.rows = mb.rows;
  s.width = mb.width;
  s.num_targets = static_cast<int64_t>(mb.target_positions.size());
  s.num_sequences = static_cast<int64_t>(mb.cu_seqlens.size()) - 1;
  s.max_seqlen = mb.max_seqlen;
  s.num_tokens = mb.num_tokens;
  s.one_document_per_row = mb.one_document_per_row;
  const int64_t cells = mb.rows * mb.width;
  const int64_t total = 4 * cells + 2 * s.num_targets + s.num_sequences + 1;
  // Pinned host memory is what lets the copy to the GPU be asynchronous.
  s.host = at::empty({total}, at::TensorOptions(at::kLong).pinned_memory(device.is_cuda()));
  int64_t* out = s.host.data_ptr<int64_t>();
  out = std::copy(mb.tokens.begin(), mb.tokens.end(), out);
  out = std::copy(mb.positions.begin(), mb.positions.end(), out);
  out = std::copy(mb.documents.begin(), mb.documents.end(), out);
  out = std::copy(mb.loss_mask.begin(), mb.loss_mask.end(), out);
  out = std::copy(mb.target_positions.begin(), mb.target_positions.end(), out);
  out = std::copy(mb.targets.begin(), mb.targets.end(), out);
  std::copy(mb.cu_seqlens.begin(), mb.cu_seqlens.end(), out);
  return s;
}

BatchTensors toDevice(const StagedBatch& s, const c10::Device& device) {
  // On the CPU the views share the staged buffer (which the views keep alive).
  const at::Tensor all = s.host.to(device, /*non_blocking=*/true);  // [total]
  const int64_t cells = s.rows * s.width;
  int64_t offset = 0;
  auto next = [&](int64_t n) {
    at::Tensor v = all.slice(0, offset, offset + n);
    offset += n;
    return v;
  };
  BatchTensors t;
  t.input.tokens = next(cells).view({s.rows, s.width});
  t.input.positions = next(cells).view({s.rows, s.width});
  t.input.documents = next(cells).view({s.rows, s.width});
  t.loss_mask = next(cells).view({s.rows, s.width});
  t.targets.positions = next(s.num_targets);
  t.targets.targets = next(s.num_targets);
  t.input.cu_seqlens = next(s.num_sequences + 1).to(at::kInt);  // [S + 1] int32
  t.input.max_seqlen = s.max_seqlen;
  t.input.one_document_per_row = s.one_document_per_row;
  t.num_loss_tokens = s.num_targets;
  t.num_tokens = s.num_tokens;
  return t;
}

BatchTensors toTensors(const MicroBatch& mb, const c10::Device& device) {
  return toDevice(stage(mb, device), device);
}

}  // namespace loom

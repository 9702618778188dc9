#include "loom/train/batch_tensors.hpp"

#include <ATen/ATen.h>

namespace loom {

namespace {

/// A [rows, width] host buffer as a `type` tensor on `device`.
template <typename T>
at::Tensor toDevice(const std::vector<T>& values, int64_t rows, int64_t width,
                    at::ScalarType source, at::ScalarType type, const c10::Device& device) {
  // from_blob does not copy; .to() does, so the result owns its memory.
  auto host =
      at::from_blob(const_cast<T*>(values.data()), {rows, width}, at::TensorOptions(source));
  return host.to(device, type, /*non_blocking=*/false, /*copy=*/true);
}

}  // namespace

BatchTensors toTensors(const MicroBatch& mb, const c10::Device& device) {
  BatchTensors t;
  t.input.tokens = toDevice(mb.tokens, mb.rows, mb.width, at::kInt, at::kLong, device);
  t.input.positions = toDevice(mb.positions, mb.rows, mb.width, at::kInt, at::kLong, device);
  t.input.documents = toDevice(mb.segment_ids, mb.rows, mb.width, at::kInt, at::kLong, device);
  t.loss_mask = toDevice(mb.loss_mask, mb.rows, mb.width, at::kByte, at::kByte, device);
  return t;
}

}  // namespace loom

#pragma once
// A planned micro-batch (host vectors from the data module) as the tensors the model and
// the loss take, on the rank's device. Training and evaluation both go through here.

#include <ATen/core/Tensor.h>

#include "loom/data/planner.hpp"
#include "loom/model/decoder.hpp"

namespace loom {

struct BatchTensors {
  DecoderInput input;    ///< tokens, positions, documents: [rows, width] int64
  at::Tensor loss_mask;  ///< [rows, width] uint8
};

/// Copies `mb` to `device` (the result owns its memory).
BatchTensors toTensors(const MicroBatch& mb, const c10::Device& device);

}  // namespace loom

#pragma once
// A planned micro-batch (the data module's batch layout, host vectors) as the tensors the
// model and the loss take, on the rank's device. Training and evaluation both go through here.
//
// Every integer buffer of a micro-batch goes into one int64 host tensor (pinned when the
// device is a GPU), which crosses to the device in one non-blocking copy; the tensors the
// model sees are views of that one device buffer. Staging can run on any thread (the
// trainer does it on its prefetch thread, for the next step, while this step computes).

#include <ATen/core/Tensor.h>

#include <vector>

#include "loom/data/planner.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/loss.hpp"

namespace loom {

struct BatchTensors {
  DecoderInput input;        ///< tokens, positions, documents [rows, width] int64; layout
  at::Tensor loss_mask;      ///< [rows, width] int64 (1 = target)
  NextTokenTargets targets;  ///< cells predicting a target and their ids, [M] int64 each
  int64_t num_loss_tokens = 0;
  int64_t num_tokens = 0;  ///< non-padding tokens
};

/// The micro-batch's buffers in one host tensor (pinned for a CUDA `device`): what
/// toDevice() copies. Thread-safe.
struct StagedBatch {
  at::Tensor host;  ///< [3 * cells + cells + 2 * M + sequences + 1] int64
  int64_t rows = 0, width = 0, num_targets = 0, num_sequences = 0, max_seqlen = 0;
  int64_t num_tokens = 0;
  bool one_document_per_row = true;
};
StagedBatch stage(const MicroBatch& mb, const c10::Device& device);

/// One non-blocking copy of `staged` to `device` (no copy on the CPU), split into views.
BatchTensors toDevice(const StagedBatch& staged, const c10::Device& device);

/// stage() then toDevice().
BatchTensors toTensors(const MicroBatch& mb, const c10::Device& device);

}  // namespace loom

#pragma once
// Gradient synchronisation: every trainable gradient is laid out in flat fp32 buckets,
// all-reduced as a SUM, then divided by the step's global loss-token count, which every
// rank knows from the dataset index. Dividing the sum (not averaging per rank) is what
// makes an update independent of how the global batch was split (DESIGN invariant 1).
//
// A rank that ran several micro-batches has already accumulated their gradients in
// param.grad() (losses are sums, so accumulation is a plain sum too).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom {

class Communicator;

class GradSync {
 public:
  /// `params`: the trainable parameters, in the same order on every rank.
  /// `bucket_bytes`: size of one fp32 bucket (one all-reduce each).
  /// `targets` (optional, same length): fp32 tensors (master weights) that receive the
  /// reduced gradient in place of the parameters themselves, so a 16-bit model's
  /// gradients stay fp32 from the all-reduce to the optimizer.
  GradSync(std::vector<at::Tensor> params, Communicator& comm, int64_t bucket_bytes = 25 << 20,
           std::vector<at::Tensor> targets = {});

  /// Collective. Sums every gradient over ranks, in fp32, and scales it by 1/`divisor`.
  /// A parameter without a gradient on this rank (a rank with no samples this step)
  /// contributes zeros; afterwards every parameter has a gradient.
  void reduce(double divisor);

  /// The global L2 norm of the (reduced) gradients of the targets, computed in fp64 over fp32
  /// values. Identical on every rank, since the gradients are.
  double gradNorm() const;

  /// Scales every gradient by min(1, max_norm / norm); returns the norm before clipping.
  /// max_norm <= 0 disables clipping.
  double clip(double max_norm);

  int64_t numBuckets() const { return static_cast<int64_t>(buckets_.size()); }
  int64_t numElements() const { return num_elements_; }

 private:
  struct Slot {
    int64_t param = 0;   // index into params_
    int64_t offset = 0;  // element offset inside the bucket
  };
  struct Bucket {
    std::vector<Slot> slots;
    int64_t elements = 0;
  };
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> targets_;  // receive the reduced gradients (default: params_)
  std::vector<Bucket> buckets_;
  Communicator& comm_;
  int64_t num_elements_ = 0;
};

}  // namespace loom

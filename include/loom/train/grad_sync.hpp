#pragma once
// Gradient synchronisation: every trainable gradient lives in flat fp32 buckets, which are
// all-reduced as SUMS, then divided by reduce()'s divisor. The trainer back-propagates each
// rank's loss sum times (loss scale / the step's global loss-token count), a factor every
// rank knows from the plan, and divides the loss scale out here. Summing (not averaging per
// rank) is what makes an update independent of how the global batch was split (DESIGN
// invariant 1).
//
// The buckets are the gradients' storage: an fp32 target's .grad is a view into its bucket,
// so autograd accumulates into it in place, and a rank that runs several micro-batches sums
// them there first (losses are sums, so accumulation is a plain sum). A 16-bit parameter's
// gradient is added into its fp32 slot as soon as autograd has produced it, then freed.
//
// Overlap: a hook runs after autograd has accumulated each parameter's gradient. During
// the step's last backward, a bucket whose every slot has arrived is started at once
// (Communicator::startAllReduceSum: on GPU, NCCL on a communication stream ordered after
// the compute stream by an event), while backward goes on with earlier layers. Buckets
// are laid out in reverse parameter order (backward meets the last layers first) and are
// always started in index order, so every rank issues the same collectives in the same
// order, including a rank that had no samples this step (it starts them all in reduce()).
//
// A step is: beginStep(); for each micro-batch, beginMicroBatch(last) then backward;
// reduce(divisor). Code that sets .grad itself (tests) may skip the micro-batch calls:
// reduce() collects whatever gradients are there.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
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
  /// `overlap`: start buckets from backward hooks (where the communicator allows it on the
  /// parameters' device); false reduces everything after backward.
  GradSync(std::vector<at::Tensor> params, Communicator& comm, int64_t bucket_bytes = 25 << 20,
           std::vector<at::Tensor> targets = {}, bool overlap = true);
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  /// Zeroes the gradients (the buckets) for a new step. The constructor does it too.
  void beginStep();
  /// Before each backward of the step: `last` marks the step's last micro-batch, during
  /// whose backward ready buckets are started.
  void beginMicroBatch(bool last);

  /// Collective. Starts the buckets the hooks did not, waits for all, divides by
  /// `divisor`. A parameter without a gradient on this rank (a rank with no samples this
  /// step) contributes zeros; afterwards every target has its reduced gradient.
  void reduce(double divisor);

  /// The global L2 norm of the (reduced) gradients, computed in fp64 over the fp32
  /// buckets. Identical on every rank, since the gradients are.
  double gradNorm() const;
  /// The same as a device scalar (fp64), without waiting for it.
  at::Tensor gradNormTensor() const;
  /// Scales every gradient by min(1, max_norm / norm) given their `norm` (gradNorm()),
  /// without a host synchronisation. max_norm <= 0 or a non-finite norm: no change.
  void clipTo(double max_norm, double norm);

  /// Scales every gradient by min(1, max_norm / norm); returns the norm before clipping.
  /// max_norm <= 0 disables clipping.
  double clip(double max_norm);

  int64_t numBuckets() const { return static_cast<int64_t>(buckets_.size()); }
  int64_t numElements() const { return num_elements_; }
  /// Whether buckets are started from backward hooks (asked for, and the communicator can).
  bool overlaps() const { return overlap_; }
  /// Buckets of the last reduce() started from backward hooks (the rest waited for it).
  int64_t bucketsStartedInBackward() const { return started_in_backward_; }

 private:
  struct Slot {
    int64_t param = 0;   // index into params_
    int64_t offset = 0;  // element offset inside the bucket
  };
  struct Bucket {
    std::vector<Slot> slots;
    int64_t elements = 0;
    at::Tensor flat;      // [elements] fp32 on the parameters' device
    int64_t arrived = 0;  // slots whose last gradient has arrived this step
    bool started = false;
  };
  struct Location {
    int64_t bucket = 0;
    int64_t slot = 0;
  };
  class Hook;

  at::Tensor slotView(const Bucket& bucket, const Slot& slot) const;
  /// Every bucket's flat fp32 buffer (handles sharing their storage), in bucket order.
  std::vector<at::Tensor> flatBuckets() const;
  /// Moves parameter `i`'s pending gradient into its slot (16-bit, or set from outside).
  void collect(int64_t i);
  /// Runs after autograd accumulated parameter `i`'s gradient (a backward hook).
  void onGradient(int64_t i);
  /// Starts every consecutive ready bucket from the next unstarted one.
  void startReadyBuckets();
  void start(Bucket& bucket);

  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> targets_;  // receive the reduced gradients (default: params_)
  std::vector<Bucket> buckets_;
  std::vector<Location> where_;  // per parameter
  std::vector<bool> arrived_;    // per parameter, this step
  Communicator& comm_;
  int64_t num_elements_ = 0;
  bool overlap_ = false;
  bool last_micro_batch_ = false;
  int64_t next_to_start_ = 0;
  int64_t started_in_backward_ = 0;
  std::mutex mutex_;  // hooks may run on autograd's device threads
};

}  // namespace loom

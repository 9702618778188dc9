#pragma once
// Dynamic loss scaling for fp16 compute (pre-Ampere GPUs: no bf16, and fp16 gradients
// underflow without it). The same rule as torch.amp.GradScaler: the loss is multiplied by
// `scale` before backward and gradients are divided by it; a step whose gradients hold an
// Inf/NaN is skipped and the scale halves (below 1 too, as GradScaler allows, down to
// kMinScale); after `growth_interval` good steps in a row the scale doubles.
//
// One scale for the world (forWorld): when any rank computes in fp16, every rank scales its
// loss by the same factor and divides the reduced gradients by it, and the overflow decision
// is the world's (the loss and gradient norm it is made from are global), so a skipped step
// is skipped everywhere. A world without fp16 ranks uses a fixed scale of 1 (disabled()).
// The trainer back-propagates loss_sum * scale / global_loss_tokens, so fp16 gradients have
// the size of a mean loss's, which GradScaler's 2^16 is made for.

#include <cstdint>

namespace loom {

class LossScaler {
 public:
  /// A scaler that never changes the scale (1): bf16 and fp32.
  static LossScaler disabled() { return LossScaler(1.0, 1.0, 1.0, 0); }
  /// GradScaler's defaults: 2^16, x2 every 2000 good steps, x0.5 on overflow.
  static LossScaler dynamic() { return LossScaler(65536.0, 2.0, 0.5, 2000); }
  /// dynamic() when any rank of the world computes in fp16, else disabled().
  static LossScaler forWorld(bool any_rank_fp16) { return any_rank_fp16 ? dynamic() : disabled(); }
  /// The lowest scale overflow backs off to: 2^-24, fp16's smallest subnormal.
  static constexpr double kMinScale = 5.9604644775390625e-08;

  LossScaler(double initial_scale, double growth_factor, double backoff_factor,
             int64_t growth_interval);

  double scale() const { return scale_; }
  bool enabled() const { return growth_interval_ > 0; }
  /// Good steps since the last change (torch's "growth tracker"): checkpointed with scale.
  int64_t goodSteps() const { return good_steps_; }
  void restore(double scale, int64_t good_steps);

  /// Records whether the step's gradients were finite; returns false when the step must be
  /// skipped. A disabled scaler only reports.
  bool update(bool finite);
  /// True when overflow has pushed the scale to its floor (kMinScale): non-finite values
  /// there are not an overflow of the scaling but of the model, and count as bad steps.
  bool atFloor() const { return scale_ <= kMinScale; }

 private:
  double scale_;
  double growth_factor_;
  double backoff_factor_;
  int64_t growth_interval_;
  int64_t good_steps_ = 0;
};

}  // namespace loom

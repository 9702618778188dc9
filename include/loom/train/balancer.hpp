#pragma once
// Weighted batch splitting across unequal ranks. `static` keeps the configured weights.
// `auto` starts from a probe (every rank times a forward/backward of the same shape before
// training: probe()) and sets weights proportional to the measured tokens/s. After that it
// measures each rank's rate over a window of recent steps (tokens over busy seconds, summed
// over the window, so a slow outlier step weighs by its length and not more) and re-weights
// every few steps, but only when the new weights are predicted to shorten the step by more
// than `min_gain`: a share error of a few percent costs as much step time, so the dead band
// is on the step time, not on the shares, and noise that would not pay is ignored.
//
// Every rank feeds the same gathered numbers and does the same arithmetic, so the weights
// are identical on every rank without further communication.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace loom {

class Balancer {
 public:
  /// `initial`: the configured weights, one per rank. `adaptive`: balance auto. `every`:
  /// steps between re-weighting checks; `window`: steps a rate is measured over; `min_gain`:
  /// the predicted step-time saving (fraction) below which the weights stay.
  Balancer(std::vector<double> initial, bool adaptive, int64_t every = 5, int64_t window = 10,
           double min_gain = 0.01);

  const std::vector<double>& weights() const { return weights_; }
  /// Replaces the weights (a resumed run restores its balancer state).
  void setWeights(std::vector<double> weights);

  /// Sets the weights from probe throughputs (tokens/s per rank, all > 0). Returns true when
  /// the weights changed. Ignored by `static`.
  bool probe(const std::vector<double>& tokens_per_second);

  /// Records the step just finished: per-rank busy seconds and tokens. Returns true when the
  /// weights changed (for the next step).
  bool observe(int64_t step, const std::vector<double>& seconds, const std::vector<double>& tokens);

  /// Tokens/s per rank over the window (the probe's before any step; 0 where nothing was
  /// measured yet).
  const std::vector<double>& throughput() const { return throughput_; }

  /// The step time the weights `w` would give at throughputs `rate`, relative to the best
  /// split (weights proportional to `rate`): max_r share_r / rate_r * sum(rate) >= 1.
  static double relativeStepTime(const std::vector<double>& w, const std::vector<double>& rate);

 private:
  struct Sample {
    std::vector<double> seconds, tokens;
  };
  std::vector<double> weights_;
  std::vector<double> throughput_;
  std::deque<Sample> window_;
  bool adaptive_;
  int64_t every_;
  size_t window_size_;
  double min_gain_;
  int64_t observed_ = 0;
};

}  // namespace loom

#pragma once
// Weighted batch splitting across unequal ranks. `static` keeps the configured weights.
// `auto` starts from a probe (every rank times a forward/backward of the same shape before
// training: probe()), sets weights proportional to the measured tokens/s, then keeps an
// exponential moving average of each step's compute rate and re-weights after the first
// step and every few steps after, so that ranks finish their shares together.
//
// Every rank feeds the same gathered numbers and does the same arithmetic, so the weights
// are identical on every rank without further communication.

#include <cstdint>
#include <vector>

namespace loom {

class Balancer {
 public:
  /// `initial`: the configured weights, one per rank. `adaptive`: balance auto.
  Balancer(std::vector<double> initial, bool adaptive, int64_t every = 5, double smoothing = 0.5,
           double min_change = 0.05);

  const std::vector<double>& weights() const { return weights_; }
  /// Replaces the weights (a resumed run restores its balancer state).
  void setWeights(std::vector<double> weights);

  /// Sets the weights from probe throughputs (tokens/s per rank, all > 0), which also seed
  /// the moving average. Returns true when the weights changed. Ignored by `static`.
  bool probe(const std::vector<double>& tokens_per_second);

  /// Records the step just finished: per-rank compute seconds and tokens. Returns true when
  /// the weights changed (for the next step).
  bool observe(int64_t step, const std::vector<double>& seconds, const std::vector<double>& tokens);

  /// Smoothed tokens/s per rank (0 where nothing was measured yet).
  const std::vector<double>& throughput() const { return throughput_; }

 private:
  std::vector<double> weights_;
  std::vector<double> throughput_;
  bool adaptive_;
  int64_t every_;
  double smoothing_;
  double min_change_;
  int64_t observed_ = 0;
};

}  // namespace loom

#include "loom/train/balancer.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "loom/core/error.hpp"

namespace loom {

Balancer::Balancer(std::vector<double> initial, bool adaptive, int64_t every, double smoothing,
                   double min_change)
    : weights_(std::move(initial)),
      throughput_(weights_.size(), 0.0),
      adaptive_(adaptive),
      every_(std::max<int64_t>(1, every)),
      smoothing_(smoothing),
      min_change_(min_change) {
  LOOM_CHECK(!weights_.empty(), "Balancer needs at least one rank");
}

void Balancer::setWeights(std::vector<double> weights) {
  LOOM_CHECK(weights.size() == weights_.size(),
             "weights for " << weights.size() << " ranks, world has " << weights_.size());
  weights_ = std::move(weights);
}

bool Balancer::probe(const std::vector<double>& tokens_per_second) {
  if (!adaptive_) return false;
  LOOM_CHECK(tokens_per_second.size() == weights_.size(),
             "Balancer::probe: expected one value per rank");
  for (double t : tokens_per_second) {
    LOOM_CHECK(t > 0 && std::isfinite(t),
               "Balancer::probe: throughput must be positive, got " << t);
  }
  throughput_ = tokens_per_second;
  const double total = std::accumulate(throughput_.begin(), throughput_.end(), 0.0);
  const double n = static_cast<double>(weights_.size());
  std::vector<double> proposed(weights_.size());
  for (size_t r = 0; r < proposed.size(); ++r) proposed[r] = throughput_[r] / total * n;
  const bool changed = proposed != weights_;
  weights_ = proposed;
  return changed;
}

bool Balancer::observe(int64_t step, const std::vector<double>& seconds,
                       const std::vector<double>& tokens) {
  if (!adaptive_) return false;
  LOOM_CHECK(seconds.size() == weights_.size() && tokens.size() == weights_.size(),
             "Balancer::observe: expected one value per rank");
  for (size_t r = 0; r < weights_.size(); ++r) {
    // A rank that had (almost) nothing to do says nothing about its speed.
    if (tokens[r] <= 0 || seconds[r] <= 1e-6) continue;
    const double rate = tokens[r] / seconds[r];
    throughput_[r] =
        throughput_[r] > 0 ? smoothing_ * throughput_[r] + (1 - smoothing_) * rate : rate;
  }
  ++observed_;
  // Re-weight after the probe step, then every `every_` steps.
  if (observed_ != 1 && observed_ % every_ != 0) return false;
  if (std::any_of(throughput_.begin(), throughput_.end(), [](double t) { return t <= 0; }))
    return false;
  const double total = std::accumulate(throughput_.begin(), throughput_.end(), 0.0);
  const double n = static_cast<double>(weights_.size());
  std::vector<double> proposed(weights_.size());
  for (size_t r = 0; r < proposed.size(); ++r) proposed[r] = throughput_[r] / total * n;
  // Normalise the current weights the same way to compare shares, not raw numbers.
  const double current_total = std::accumulate(weights_.begin(), weights_.end(), 0.0);
  double largest_change = 0;
  for (size_t r = 0; r < proposed.size(); ++r) {
    const double share_now = weights_[r] / current_total;
    const double share_new = proposed[r] / n;
    largest_change = std::max(largest_change, std::abs(share_new - share_now) / share_now);
  }
  (void)step;
  if (largest_change < min_change_) return false;
  weights_ = proposed;
  return true;
}

}  // namespace loom

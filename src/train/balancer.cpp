#include "loom/train/balancer.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "loom/core/error.hpp"

namespace loom {

namespace {

/// Weights proportional to `rate`, summing to the number of ranks.
std::vector<double> proportional(const std::vector<double>& rate) {
  const double total = std::accumulate(rate.begin(), rate.end(), 0.0);
  const double n = static_cast<double>(rate.size());
  std::vector<double> w(rate.size());
  for (size_t r = 0; r < w.size(); ++r) w[r] = rate[r] / total * n;
  return w;
}

}  // namespace

Balancer::Balancer(std::vector<double> initial, bool adaptive, int64_t every, int64_t window,
                   double min_gain)
    : weights_(std::move(initial)),
      throughput_(weights_.size(), 0.0),
      adaptive_(adaptive),
      every_(std::max<int64_t>(1, every)),
      window_size_(static_cast<size_t>(std::max<int64_t>(1, window))),
      min_gain_(min_gain) {
  LOOM_CHECK(!weights_.empty(), "Balancer needs at least one rank");
}

void Balancer::setWeights(std::vector<double> weights) {
  LOOM_CHECK(weights.size() == weights_.size(),
             "weights for " << weights.size() << " ranks, world has " << weights_.size());
  weights_ = std::move(weights);
}

double Balancer::relativeStepTime(const std::vector<double>& w, const std::vector<double>& rate) {
  const double w_total = std::accumulate(w.begin(), w.end(), 0.0);
  const double rate_total = std::accumulate(rate.begin(), rate.end(), 0.0);
  double worst = 0;
  for (size_t r = 0; r < w.size(); ++r) {
    if (w[r] > 0) worst = std::max(worst, w[r] / w_total / rate[r] * rate_total);
  }
  return worst;
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
  const std::vector<double> proposed = proportional(throughput_);
  const bool changed = proposed != weights_;
  weights_ = proposed;
  return changed;
}

bool Balancer::observe(int64_t step, const std::vector<double>& seconds,
                       const std::vector<double>& tokens) {
  (void)step;
  if (!adaptive_) return false;
  LOOM_CHECK(seconds.size() == weights_.size() && tokens.size() == weights_.size(),
             "Balancer::observe: expected one value per rank");
  window_.push_back({seconds, tokens});
  if (window_.size() > window_size_) window_.pop_front();
  // Each rank's rate over the window: its tokens over its seconds, counting only steps in
  // which it had work (a rank with (almost) nothing to do says nothing about its speed).
  bool all_measured = true;
  for (size_t r = 0; r < weights_.size(); ++r) {
    double t = 0, s = 0;
    for (const Sample& x : window_) {
      if (x.tokens[r] <= 0 || x.seconds[r] <= 1e-6) continue;
      t += x.tokens[r];
      s += x.seconds[r];
    }
    if (s > 0) {
      throughput_[r] = t / s;
    } else if (throughput_[r] <= 0) {
      all_measured = false;
    }
  }
  ++observed_;
  if (observed_ % every_ != 0 || !all_measured) return false;
  // Re-weight only when it pays: the step the current weights give, relative to the best.
  if (relativeStepTime(weights_, throughput_) < 1.0 + min_gain_) return false;
  weights_ = proportional(throughput_);
  return true;
}

}  // namespace loom

#include "loom/train/loss_scaler.hpp"

#include <algorithm>

#include "loom/core/error.hpp"

namespace loom {

LossScaler::LossScaler(double initial_scale, double growth_factor, double backoff_factor,
                       int64_t growth_interval)
    : scale_(initial_scale),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval) {
  LOOM_CHECK(initial_scale > 0 && growth_factor >= 1 && backoff_factor > 0 && backoff_factor <= 1,
             "LossScaler: bad settings");
}

void LossScaler::restore(double scale, int64_t good_steps) {
  LOOM_CHECK(scale > 0, "LossScaler: scale must be positive, got " << scale);
  scale_ = scale;
  good_steps_ = good_steps;
}

bool LossScaler::update(bool finite) {
  if (!enabled()) return finite;
  if (!finite) {
    // As torch: the scale backs off (below 1 too) and the growth tracker restarts.
    scale_ = std::max(kMinScale, scale_ * backoff_factor_);
    good_steps_ = 0;
    return false;
  }
  if (++good_steps_ == growth_interval_) {
    scale_ *= growth_factor_;
    good_steps_ = 0;
  }
  return true;
}

}  // namespace loom

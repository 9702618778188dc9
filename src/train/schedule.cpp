#include "loom/train/schedule.hpp"

#include <algorithm>
#include <cmath>

namespace loom {

double learningRate(LrSchedule schedule, double peak, int64_t warmup_steps, int64_t total_steps,
                    int64_t step) {
  if (step < warmup_steps) {
    return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double p = std::clamp(static_cast<double>(step - warmup_steps) / span, 0.0, 1.0);
  switch (schedule) {
    case LrSchedule::kCosine:
      return peak * 0.5 * (1.0 + std::cos(M_PI * p));
    case LrSchedule::kLinear:
      return peak * (1.0 - p);
    case LrSchedule::kConstant:
      return peak;
  }
  return peak;
}

}  // namespace loom

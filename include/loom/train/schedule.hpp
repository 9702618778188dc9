#pragma once
// Learning-rate schedule: linear warmup, then cosine, linear or constant.

#include <cstdint>

#include "loom/config/config.hpp"

namespace loom {

/// The learning rate of optimizer step `step` (0-based) of `total_steps`:
///   warmup (step < W):  peak * (step + 1) / W       (the first step already moves)
///   cosine:             peak * 0.5 * (1 + cos(pi * p)),  p = (step - W) / max(1, T - W)
///   linear:             peak * (1 - p)
///   constant:           peak
/// p is clamped to [0, 1], so steps past the end keep the final value.
double learningRate(LrSchedule schedule, double peak, int64_t warmup_steps, int64_t total_steps,
                    int64_t step);

}  // namespace loom

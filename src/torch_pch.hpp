// Precompiled for every translation unit of the loom library: the heavy headers that
// most of them include anyway. A rebuild after a one-file change then takes seconds.
#pragma once
#include <torch/torch.h>  // NOLINT: heavy; only here and in .cpp files, never in public headers

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>


// Precompiled for every translation unit of the torch-using modules (model, comm, train):
// libtorch's headers dominate their compile time. spdlog/fmt must NOT be added here: the
// torch wheel ships its own fmt in its include path (see include/loom/core/log.hpp).
#pragma once
#include <torch/torch.h>  // NOLINT: heavy; only here and in .cpp files, never in public headers

#include <nlohmann/json.hpp>

#pragma once
// The --device and --dtype flags of the single-process subcommands (eval, export, generate).

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace loom::cli {

/// --device: auto (cuda:0 when a GPU is visible, else cpu), cpu, cuda or cuda:N.
c10::Device parseDeviceFlag(const std::string& text);

/// --dtype: bf16, fp16 or fp32; `fallback` when empty. InputError naming the flag otherwise.
at::ScalarType parseDtypeFlag(const std::string& text, at::ScalarType fallback);

}  // namespace loom::cli

#include "device_flags.hpp"

#include <torch/cuda.h>

#include "loom/core/error.hpp"
#include "loom/core/strings.hpp"

namespace loom::cli {

c10::Device parseDeviceFlag(const std::string& text) {
  if (text == "auto") {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  if (text == "cpu") return c10::Device(c10::kCPU);
  int index = 0;
  if (text != "cuda") {
    const bool well_formed = startsWith(text, "cuda:") && text.size() > 5 &&
                             text.find_first_not_of("0123456789", 5) == std::string::npos &&
                             text.size() < 10;
    LOOM_INPUT_CHECK(well_formed,
                     "--device: got '" << text << "', expected auto, cpu, cuda or cuda:N");
    index = std::stoi(text.substr(5));
  }
  const int count = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  LOOM_INPUT_CHECK(index < count,
                   "--device " << text << ": this process sees " << count << " CUDA device(s)");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

at::ScalarType parseDtypeFlag(const std::string& text, at::ScalarType fallback) {
  if (text.empty()) return fallback;
  if (text == "bf16") return at::kBFloat16;
  if (text == "fp16") return at::kHalf;
  if (text == "fp32") return at::kFloat;
  LOOM_INPUT_CHECK(false, "--dtype: got '" << text << "', expected bf16, fp16 or fp32");
  return fallback;
}

}  // namespace loom::cli

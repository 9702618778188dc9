#pragma once
// The CUDA devices this process can see, as plain data (no CUDA headers here).

#include <cstdint>
#include <string>
#include <vector>

namespace loom {

struct GpuInfo {
  int index = 0;
  std::string name;
  int major = 0;  ///< compute capability
  int minor = 0;
  int64_t total_memory = 0;  ///< bytes

  /// Native bf16 arithmetic: Ampere (sm_80) and later.
  bool hasBf16() const { return major >= 8; }
  /// fp16 at full rate: Volta (sm_70) and later. Pascal (GTX 10xx) runs fp16 at 1/64.
  bool hasFastFp16() const { return major >= 7; }
  std::string capability() const { return "sm_" + std::to_string(major) + std::to_string(minor); }
};

/// Lists visible CUDA devices; empty in a build without CUDA or on a machine without GPUs.
std::vector<GpuInfo> listCudaDevices();

/// The most memory libtorch's caching allocator has had allocated on CUDA device `index`
/// since the process started (or resetCudaPeakMemory), in bytes; 0 without CUDA.
int64_t cudaPeakMemoryBytes(int index);
/// Bytes the caching allocator has allocated on CUDA device `index` now; 0 without CUDA.
int64_t cudaAllocatedBytes(int index);
/// Free memory on CUDA device `index` now (cudaMemGetInfo; creates the device's context);
/// 0 without CUDA.
int64_t cudaFreeMemoryBytes(int index);
void resetCudaPeakMemory(int index);

}  // namespace loom

#include "loom/comm/device.hpp"

#if LOOM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace loom {

std::vector<GpuInfo> listCudaDevices() {
  std::vector<GpuInfo> gpus;
#if LOOM_WITH_CUDA
  int count = 0;
  // No driver or no device is not an error here: the rank then runs on the CPU.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return gpus;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = prop.name;
    g.major = prop.major;
    g.minor = prop.minor;
    g.total_memory = static_cast<int64_t>(prop.totalGlobalMem);
    gpus.push_back(g);
  }
#endif
  return gpus;
}

int64_t cudaPeakMemoryBytes(int index) {
#if LOOM_WITH_CUDA
  const auto stats =
      c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  return stats.allocated_bytes[0].peak;  // [0]: StatType::AGGREGATE (all pools)
#else
  (void)index;
  return 0;
#endif
}

int64_t cudaAllocatedBytes(int index) {
#if LOOM_WITH_CUDA
  const auto stats =
      c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  return stats.allocated_bytes[0].current;
#else
  (void)index;
  return 0;
#endif
}

int64_t cudaFreeMemoryBytes(int index) {
#if LOOM_WITH_CUDA
  int previous = 0;
  size_t free = 0, total = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(index) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  const bool ok = cudaMemGetInfo(&free, &total) == cudaSuccess;
  cudaSetDevice(previous);
  if (!ok) cudaGetLastError();
  return ok ? static_cast<int64_t>(free) : 0;
#else
  (void)index;
  return 0;
#endif
}

void resetCudaPeakMemory(int index) {
#if LOOM_WITH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
#else
  (void)index;
#endif
}

}  // namespace loom

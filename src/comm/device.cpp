#include "loom/comm/device.hpp"

#if LOOM_WITH_CUDA
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

}  // namespace loom

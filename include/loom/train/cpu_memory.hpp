#pragma once
// The bytes held by CPU tensors, as CUDA's caching allocator counts them on a GPU: a wrapper
// around libtorch's CPU allocator counts every allocation and free. Memory-mapped checkpoint
// tensors are not allocations and are not counted.

#include <cstdint>

namespace loom {

/// Installs the counting CPU allocator (once; later calls do nothing). Tensors allocated
/// before it keep their allocator and are not counted.
void trackCpuTensorMemory();
/// Whether trackCpuTensorMemory() has been called.
bool cpuTensorMemoryTracked();
/// Bytes held now by tensors allocated since tracking started.
int64_t cpuTensorBytes();
/// The most cpuTensorBytes() has been since tracking started or the last reset.
int64_t cpuPeakTensorBytes();
/// Starts a new peak from the current level.
void resetCpuPeakTensorBytes();

}  // namespace loom

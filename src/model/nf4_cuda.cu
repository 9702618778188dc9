// NF4 dequantization on CUDA (see nf4_cuda.hpp): one thread per packed byte, two values.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "nf4_cuda.hpp"

namespace loom::detail {
namespace {

template <typename T>
__device__ T fromFloat(float v);
template <>
__device__ float fromFloat<float>(float v) {
  return v;
}
template <>
__device__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __half fromFloat<__half>(float v) {
  return __float2half_rn(v);
}

__global__ void absmaxKernel(const uint8_t* codes, const float* code, const float* scales,
                             float offset, int64_t blocks, int64_t nested_blocksize, float* out) {
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < blocks;
       b += int64_t{gridDim.x} * blockDim.x) {
    // __fmul_rn / __fadd_rn: no contraction into an FMA, as on the CPU.
    out[b] = __fadd_rn(__fmul_rn(code[codes[b]], scales[b / nested_blocksize]), offset);
  }
}

template <typename T>
__global__ void dequantizeKernel(const uint8_t* packed, const float* absmax, int64_t n,
                                 int block_shift, Nf4LevelTable levels, T* out) {
  const int64_t bytes = (n + 1) / 2;
  for (int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; j < bytes;
       j += int64_t{gridDim.x} * blockDim.x) {
    const uint8_t byte = packed[j];
    const int64_t i = 2 * j;
    // Both values of a byte share a block: blocks have an even size.
    const float scale = absmax[i >> block_shift];
    out[i] = fromFloat<T>(__fmul_rn(levels.v[byte >> 4], scale));
    if (i + 1 < n) out[i + 1] = fromFloat<T>(__fmul_rn(levels.v[byte & 0x0F], scale));
  }
}

constexpr int kThreads = 256;

int gridFor(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 16)));
}

}  // namespace

int launchNf4Absmax(const uint8_t* codes, const float* code, const float* scales, float offset,
                    int64_t blocks, int64_t nested_blocksize, float* out, void* stream) {
  absmaxKernel<<<gridFor(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      codes, code, scales, offset, blocks, nested_blocksize, out);
  return static_cast<int>(cudaGetLastError());
}

int launchNf4Dequantize(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                        Nf4OutType type, void* out, void* stream) {
  int shift = 0;
  while ((int64_t{1} << shift) < blocksize) ++shift;
  const int grid = gridFor((n + 1) / 2);
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case Nf4OutType::kFloat:
      dequantizeKernel<<<grid, kThreads, 0, s>>>(packed, absmax, n, shift, kNf4LevelTable,
                                                 static_cast<float*>(out));
      break;
    case Nf4OutType::kBFloat16:
      dequantizeKernel<<<grid, kThreads, 0, s>>>(packed, absmax, n, shift, kNf4LevelTable,
                                                 static_cast<__nv_bfloat16*>(out));
      break;
    case Nf4OutType::kHalf:
      dequantizeKernel<<<grid, kThreads, 0, s>>>(packed, absmax, n, shift, kNf4LevelTable,
                                                 static_cast<__half*>(out));
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace loom::detail

#pragma once
// Launchers of the NF4 kernels in nf4_cuda.cu (built when LOOM_WITH_CUDA). Raw pointers and
// the CUDA stream only, so that nvcc never compiles libtorch headers; nf4.cpp holds the glue.
// Every value is computed in fp32 with one rounding per operation (no fused multiply-add), so
// results equal the CPU code's bit for bit.

#include <cstdint>

namespace loom::detail {

enum class Nf4OutType { kFloat, kBFloat16, kHalf };

/// out[b] = code[codes[b]] * scales[b / nested_blocksize] + offset, for b < blocks.
/// Returns the cudaError_t of the launch (0 on success).
int launchNf4Absmax(const uint8_t* codes, const float* code, const float* scales, float offset,
                    int64_t blocks, int64_t nested_blocksize, float* out, void* stream);

/// out[i] = level[nibble i of packed] * absmax[i / blocksize] rounded to `type`, i < n;
/// `blocksize` is a power of two. Returns the cudaError_t of the launch.
int launchNf4Dequantize(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                        Nf4OutType type, void* out, void* stream);

}  // namespace loom::detail

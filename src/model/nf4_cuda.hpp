#pragma once
// Launchers of the NF4 kernels in nf4_cuda.cu (built when LOOM_WITH_CUDA). Raw pointers and
// the CUDA stream only, so that nvcc never compiles libtorch headers; nf4.cpp holds the glue.
// Every value is computed in fp32 with one rounding per operation (no fused multiply-add), so
// results equal the CPU code's bit for bit.

#include <cstdint>

namespace loom::detail {

/// bitsandbytes' get_4bit_type("nf4"): quantiles of N(0, 1) normalised to [-1, 1], ascending,
/// level 7 = 0. Shared by the CPU code and the kernels.
struct Nf4LevelTable {
  float v[16];
};
inline constexpr Nf4LevelTable kNf4LevelTable = {{
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
}};

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

#pragma once
// NF4 (4-bit NormalFloat, https://arxiv.org/abs/2305.14314) in bitsandbytes' layout, byte for
// byte what `bitsandbytes.functional.quantize_4bit(w, blocksize=64, quant_type="nf4",
// compress_statistics=True)` writes (its CPU path, bitsandbytes 0.50):
//   - the weight is flattened row-major and cut into blocks of `blocksize` (64) values;
//   - each block keeps its absmax; a value becomes the index of the nearest of the 16 NF4
//     levels of value / absmax (ties to the lower level; code 7 is 0);
//   - two indices a byte, the first element in the high nibble (an odd count pads a 7);
//   - double quantization: the absmax values minus their mean (`offset`) are quantized with
//     bitsandbytes' signed 8-bit dynamic map in blocks of 256, with fp32 second-level scales.
// Dequantization gives value = level[index] * absmax in fp32, rounded once to the requested
// dtype, on the CPU here and on CUDA in nf4_cuda.cu (bit for bit the same).

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

namespace loom {

inline constexpr int64_t kNf4BlockSize = 64;         ///< bitsandbytes' default 4-bit block
inline constexpr int64_t kNf4NestedBlockSize = 256;  ///< its block for the absmax values

/// A frozen weight in NF4. All tensors live on one device.
struct Nf4Weight {
  /// uint8 [(numel + 1) / 2]: two 4-bit indices a byte, the first in the high nibble.
  at::Tensor packed;
  /// Double quantization: uint8 [blocks], 8-bit codes of (absmax - offset).
  /// Without it: fp32 [blocks], the absmax values themselves.
  at::Tensor absmax;
  at::Tensor nested_absmax;    ///< fp32 [ceil(blocks / nested_blocksize)]; undefined without
  at::Tensor nested_code;      ///< fp32 [256] the 8-bit map; undefined without double quant
  float offset = 0.0f;         ///< the mean subtracted from the absmax values
  std::vector<int64_t> shape;  ///< the weight's shape, [out, in] for a linear layer
  int64_t blocksize = kNf4BlockSize;
  int64_t nested_blocksize = kNf4NestedBlockSize;

  bool doubleQuantized() const { return nested_absmax.defined(); }
  int64_t numel() const;
  int64_t blocks() const { return (numel() + blocksize - 1) / blocksize; }
  c10::Device device() const { return packed.device(); }
  /// The same weight with every tensor on `device`.
  Nf4Weight to(c10::Device device) const;
};

/// The 16 NF4 levels (fp32, ascending, level 7 = 0), as bitsandbytes' get_4bit_type("nf4").
const std::vector<float>& nf4Levels();
/// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256
/// fp32 values, ascending, in [-0.99297, 1].
const std::vector<float>& dynamicMap8Bit();

/// Quantizes a floating tensor (any shape, any device; computed on the CPU from its values
/// in fp32). `blocksize` is one of bitsandbytes' 4-bit block sizes.
Nf4Weight quantizeNf4(const at::Tensor& weight, bool double_quant = true,
                      int64_t blocksize = kNf4BlockSize);

/// The per-block absmax values (fp32 [blocks], on the weight's device).
at::Tensor nf4Absmax(const Nf4Weight& weight);

/// The weight in `dtype` (fp32, bf16 or fp16), shaped `weight.shape`, on its device.
at::Tensor dequantizeNf4(const Nf4Weight& weight, at::ScalarType dtype);

/// Whether bitsandbytes accepts `blocksize` for 4-bit quantization (32, 64, ..., 4096).
bool isBitsandbytesBlocksize(int64_t blocksize);

/// y = x W^T + b with W = dequantizeNf4(weight, x.dtype), differentiable in x only: the
/// dequantized W exists while the product is computed, in forward and again in backward
/// (dx = dy W). The base gets no gradient. `bias` may be undefined; it must not need one.
/// `weight` must outlive the autograd graph (it is owned by the layer).
at::Tensor nf4Linear(const at::Tensor& x, const Nf4Weight& weight, const at::Tensor& bias);

}  // namespace loom

#include "loom/model/nf4.hpp"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>
#include <optional>

#include "loom/core/error.hpp"
#include "nf4_cuda.hpp"

#ifdef LOOM_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace loom {
namespace detail {
namespace {

const std::vector<float> kNf4Levels(std::begin(kNf4LevelTable.v), std::end(kNf4LevelTable.v));

/// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), op for op: fp32
/// linspace boundaries, fp32 midpoints, scaled by a power of ten (a Python scalar, applied in
/// fp32), then 0 and 1 added and the list sorted.
std::vector<float> makeDynamicMap() {
  constexpr int kMaxExponentBits = 7, kNonSignBits = 7;
  std::vector<float> data;
  for (int i = 0; i < kMaxExponentBits; ++i) {
    const int64_t fraction_items = (int64_t{1} << (i + kNonSignBits - kMaxExponentBits)) + 1;
    const auto boundaries = at::linspace(0.1, 1, fraction_items, at::kFloat);
    const auto means = (boundaries.slice(0, 0, -1) + boundaries.slice(0, 1)) / 2.0;
    const double scale = std::pow(10.0, static_cast<double>(-(kMaxExponentBits - 1) + i));
    const auto pos = (means * scale).contiguous();
    const auto neg = (means * -scale).contiguous();
    for (int64_t k = 0; k < pos.numel(); ++k) data.push_back(pos.data_ptr<float>()[k]);
    for (int64_t k = 0; k < neg.numel(); ++k) data.push_back(neg.data_ptr<float>()[k]);
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  LOOM_CHECK(data.size() == 256, "the dynamic map has " << data.size() << " values, not 256");
  std::sort(data.begin(), data.end());
  return data;
}

/// bitsandbytes' CPU 8-bit blockwise quantizer (csrc/cpu_ops.cpp, 0.50): a value scaled
/// into [-1, 1] indexes one of 65536 bins, and each bin holds the code whose midpoints
/// bracket the bin's left edge.
class Lut8Bit {
 public:
  static constexpr int kSize = 65536;
  explicit Lut8Bit(const std::vector<float>& code) {
    std::array<float, 255> mid{};
    for (int i = 0; i < 255; ++i) mid[i] = 0.5f * (code[i] + code[i + 1]);
    int c = 0;
    for (int i = 0; i < kSize; ++i) {
      const float val = -1.0f + (2.0f * static_cast<float>(i)) / static_cast<float>(kSize - 1);
      while (c < 255 && mid[c] < val) ++c;
      lut_[i] = static_cast<uint8_t>(c);
    }
  }
  uint8_t operator()(float normed) const {
    const float v = std::clamp(normed, -1.0f, 1.0f);
    // bitsandbytes compiles this line with FMA contraction: one rounding.
    const float bin = std::fma((v + 1.0f) * 0.5f, static_cast<float>(kSize - 1), 0.5f);
    return lut_[static_cast<uint16_t>(bin)];
  }

 private:
  std::array<uint8_t, kSize> lut_{};
};

const Lut8Bit& dynamicMapLut() {
  static const Lut8Bit lut(dynamicMap8Bit());
  return lut;
}

/// quantize_blockwise of `values` (fp32, contiguous) in blocks of `blocksize` with the
/// dynamic map: codes and per-block absmax.
void quantizeBlockwise8Bit(const float* values, int64_t n, int64_t blocksize, uint8_t* codes,
                           float* absmax) {
  const Lut8Bit& lut = dynamicMapLut();
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    float m = 0.0f;
    for (int64_t i = begin; i < end; ++i) m = std::max(m, std::fabs(values[i]));
    absmax[b] = m;
    if (m == 0.0f) {
      std::fill(codes + begin, codes + end, uint8_t{0});
      continue;
    }
    const float inv = 1.0f / m;
    for (int64_t i = begin; i < end; ++i) codes[i] = lut(values[i] * inv);
  }
}

/// The NF4 index of a value already scaled into [-1, 1]: the number of level midpoints
/// below it (torch.bucketize with right=False, what bitsandbytes' CPU quantizer runs).
struct Nf4Bucketizer {
  std::array<float, 15> mid{};
  Nf4Bucketizer() {
    for (int i = 0; i < 15; ++i) mid[i] = (kNf4Levels[i] + kNf4Levels[i + 1]) / 2.0f;
  }
  uint8_t operator()(float x) const {
    uint8_t q = 0;
    for (float m : mid) q += static_cast<uint8_t>(m < x);
    return q;
  }
};

template <typename T>
void dequantizeCpu(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                   T* out) {
  const float* levels = kNf4Levels.data();
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  at::parallel_for(0, blocks, 64, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const float scale = absmax[b];
      const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
      for (int64_t i = begin; i < end; ++i) {
        const uint8_t byte = packed[i >> 1];
        const uint8_t q = (i & 1) ? (byte & 0x0F) : (byte >> 4);
        out[i] = static_cast<T>(levels[q] * scale);
      }
    }
  });
}

/// Frozen linear over an NF4 weight: forward and backward each dequantize it for the
/// duration of one product.
}  // namespace

at::Tensor nf4AbsmaxCuda(const Nf4Weight& w);
at::Tensor dequantizeNf4Cuda(const Nf4Weight& w, at::ScalarType dtype);

namespace {

class Nf4LinearFunction : public torch::autograd::Function<Nf4LinearFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const std::optional<at::Tensor>& bias, const Nf4Weight* weight) {
    ctx->saved_data["weight"] = reinterpret_cast<int64_t>(weight);
    const at::Tensor w = dequantizeNf4(*weight, x.scalar_type());  // [out, in]
    return at::linear(x, w, bias.has_value() ? *bias : at::Tensor());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto* weight = reinterpret_cast<const Nf4Weight*>(ctx->saved_data["weight"].toInt());
    const at::Tensor& dy = grad_out[0];                             // [..., out]
    const at::Tensor w = dequantizeNf4(*weight, dy.scalar_type());  // [out, in]
    return {at::matmul(dy, w), at::Tensor(), at::Tensor()};         // [..., in]
  }
};

}  // namespace

// CUDA: the kernels of nf4_cuda.cu on the current stream of the weight's device.
at::Tensor nf4AbsmaxCuda(const Nf4Weight& w) {
#ifdef LOOM_WITH_CUDA
  const c10::cuda::CUDAGuard guard(w.device());
  const at::Tensor codes = w.absmax.contiguous();
  const at::Tensor code = w.nested_code.to(at::kFloat).contiguous();
  const at::Tensor scales = w.nested_absmax.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({codes.numel()}, codes.options().dtype(at::kFloat));
  const int rc =
      launchNf4Absmax(codes.data_ptr<uint8_t>(), code.data_ptr<float>(), scales.data_ptr<float>(),
                      w.offset, codes.numel(), w.nested_blocksize, out.data_ptr<float>(),
                      c10::cuda::getCurrentCUDAStream().stream());
  LOOM_CHECK(rc == 0, "NF4 absmax kernel launch failed (cudaError " << rc << ")");
  return out;
#else
  LOOM_CHECK(false, "NF4 on CUDA: this build has no CUDA (LOOM_WITH_CUDA=OFF)");
#endif
}

at::Tensor dequantizeNf4Cuda(const Nf4Weight& w, at::ScalarType dtype) {
#ifdef LOOM_WITH_CUDA
  const c10::cuda::CUDAGuard guard(w.device());
  const at::Tensor absmax = nf4Absmax(w).contiguous();
  const at::Tensor packed = w.packed.contiguous();
  at::Tensor out = at::empty(w.shape, packed.options().dtype(dtype));
  const Nf4OutType type = dtype == at::kFloat      ? Nf4OutType::kFloat
                          : dtype == at::kBFloat16 ? Nf4OutType::kBFloat16
                                                   : Nf4OutType::kHalf;
  const int rc = launchNf4Dequantize(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(),
                                     w.numel(), w.blocksize, type, out.data_ptr(),
                                     c10::cuda::getCurrentCUDAStream().stream());
  LOOM_CHECK(rc == 0, "NF4 dequantization kernel launch failed (cudaError " << rc << ")");
  return out;
#else
  (void)dtype;
  LOOM_CHECK(false, "NF4 on CUDA: this build has no CUDA (LOOM_WITH_CUDA=OFF)");
#endif
}

}  // namespace detail

int64_t Nf4Weight::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Nf4Weight Nf4Weight::to(c10::Device device) const {
  Nf4Weight out = *this;
  for (auto* t : {&out.packed, &out.absmax, &out.nested_absmax, &out.nested_code}) {
    if (t->defined()) *t = t->to(device);
  }
  return out;
}

const std::vector<float>& nf4Levels() { return detail::kNf4Levels; }

const std::vector<float>& dynamicMap8Bit() {
  static const std::vector<float> map = detail::makeDynamicMap();
  return map;
}

bool isBitsandbytesBlocksize(int64_t blocksize) {
  for (int64_t b = 32; b <= 4096; b *= 2) {
    if (blocksize == b) return true;
  }
  return false;
}

Nf4Weight quantizeNf4(const at::Tensor& weight, bool double_quant, int64_t blocksize) {
  LOOM_CHECK(at::isFloatingType(weight.scalar_type()),
             "NF4 quantizes floating tensors, got " << c10::toString(weight.scalar_type()));
  LOOM_CHECK(isBitsandbytesBlocksize(blocksize), "NF4 blocksize " << blocksize
                                                                  << " is not one of "
                                                                     "bitsandbytes' (32..4096)");
  const at::Tensor flat = weight.detach().to(at::kCPU, at::kFloat).contiguous().view({-1});
  const int64_t n = flat.numel();
  LOOM_CHECK(n > 0, "cannot quantize an empty tensor");
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  const int64_t full = n / blocksize;
  const float* x = flat.data_ptr<float>();

  at::Tensor absmax = at::empty({blocks}, at::kFloat);
  at::Tensor packed = at::empty({(n + 1) / 2}, at::kByte);
  float* am = absmax.data_ptr<float>();
  uint8_t* out = packed.data_ptr<uint8_t>();
  static const detail::Nf4Bucketizer bucket;
  // Full blocks multiply by the reciprocal, the last partial block divides, and only the
  // partial block's stored absmax is clamped: bitsandbytes' quantize_4bit, op for op.
  const float tiny = static_cast<float>(1e-38);
  at::parallel_for(0, blocks, 16, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
      float m = 0.0f;
      for (int64_t i = begin; i < end; ++i) m = std::max(m, std::fabs(x[i]));
      const bool partial = b >= full;
      const float denom = std::max(m, tiny);
      am[b] = partial ? denom : m;
      const float inv = 1.0f / denom;
      // A block starts at an even index (blocksize is even): its bytes are its own.
      for (int64_t i = begin; i < end; i += 2) {
        uint8_t q[2] = {7, 7};  // an odd count pads with a scaled 0, i.e. level 7
        for (int64_t k = 0; k < 2 && i + k < end; ++k) {
          const float s = partial ? x[i + k] / denom : x[i + k] * inv;
          q[k] = bucket(std::clamp(s, -1.0f, 1.0f));
        }
        out[i >> 1] = static_cast<uint8_t>((q[0] << 4) | q[1]);
      }
    }
  });

  Nf4Weight w;
  w.packed = packed;
  w.shape = weight.sizes().vec();
  w.blocksize = blocksize;
  if (!double_quant) {
    w.absmax = absmax;
    return w;
  }
  // torch's mean, always in its one-thread summation order: with more threads the order (and
  // the last bit) follows the thread count, and ranks must hold the same base whatever theirs.
  // (Quantization runs while the model loads, before any other thread computes.)
  {
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    w.offset = absmax.mean().item<float>();
    at::set_num_threads(threads);
  }
  const at::Tensor centred = (absmax - w.offset).contiguous();
  w.nested_blocksize = kNf4NestedBlockSize;
  const int64_t blocks2 = (blocks + kNf4NestedBlockSize - 1) / kNf4NestedBlockSize;
  w.absmax = at::empty({blocks}, at::kByte);
  w.nested_absmax = at::empty({blocks2}, at::kFloat);
  detail::quantizeBlockwise8Bit(centred.data_ptr<float>(), blocks, kNf4NestedBlockSize,
                                w.absmax.data_ptr<uint8_t>(), w.nested_absmax.data_ptr<float>());
  w.nested_code = at::tensor(dynamicMap8Bit(), at::kFloat);
  return w;
}

at::Tensor nf4Absmax(const Nf4Weight& w) {
  if (!w.doubleQuantized()) return w.absmax.to(at::kFloat);
  if (w.device().is_cuda()) return detail::nf4AbsmaxCuda(w);
  // dequantize_blockwise (code[q] * scale in fp32), then + offset in fp32.
  const at::Tensor codes = w.absmax.contiguous();
  const at::Tensor code = w.nested_code.to(at::kFloat).contiguous();
  const at::Tensor scales = w.nested_absmax.to(at::kFloat).contiguous();
  const int64_t blocks = codes.numel();
  at::Tensor out = at::empty({blocks}, at::kFloat);
  const uint8_t* q = codes.data_ptr<uint8_t>();
  const float* c = code.data_ptr<float>();
  const float* s = scales.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t b = 0; b < blocks; ++b) {
    const float v = c[q[b]] * s[b / w.nested_blocksize];
    o[b] = v + w.offset;
  }
  return out;
}

at::Tensor dequantizeNf4(const Nf4Weight& w, at::ScalarType dtype) {
  LOOM_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
             "NF4 dequantizes to fp32, bf16 or fp16, not " << c10::toString(dtype));
  if (w.device().is_cuda()) return detail::dequantizeNf4Cuda(w, dtype);
  const int64_t n = w.numel();
  const at::Tensor absmax = nf4Absmax(w).contiguous();
  const at::Tensor packed = w.packed.contiguous();
  at::Tensor out = at::empty(w.shape, at::TensorOptions().dtype(dtype));
  const uint8_t* p = packed.data_ptr<uint8_t>();
  const float* am = absmax.data_ptr<float>();
  switch (dtype) {
    case at::kFloat:
      detail::dequantizeCpu(p, am, n, w.blocksize, out.data_ptr<float>());
      break;
    case at::kBFloat16:
      detail::dequantizeCpu(p, am, n, w.blocksize, out.data_ptr<c10::BFloat16>());
      break;
    default:
      detail::dequantizeCpu(p, am, n, w.blocksize, out.data_ptr<c10::Half>());
      break;
  }
  return out;
}

at::Tensor nf4Linear(const at::Tensor& x, const Nf4Weight& weight, const at::Tensor& bias) {
  LOOM_CHECK(!bias.defined() || !bias.requires_grad(),
             "the bias of an NF4 layer is frozen like its weight");
  return detail::Nf4LinearFunction::apply(
      x, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt, &weight);
}

}  // namespace loom

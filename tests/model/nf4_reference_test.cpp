// NF4 against bitsandbytes (its CPU path, the pinned version): packing, absmax codes, the
// second-level scales and offset must be byte-identical to quantize_4bit(..., blocksize=64,
// quant_type="nf4", compress_statistics=True), and dequantization identical in fp32 and bf16
// (0 ulp: both compute level * absmax in fp32 and round once). The double-quant offset is a
// mean whose last bit depends on torch's thread count: the reference runs one thread, the
// order Loom always uses. Any tolerance would hide a
// wrong byte, whose effect on a weight (one NF4 step, ~10% of a block's absmax) is far above
// rounding, so none is used.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/model/nf4.hpp"
#include "loom/model/safetensors.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::TempDir;

int64_t mismatches(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  if (a.numel() != b.numel()) return -1;
  if (a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat) {
    // bit patterns, so that -0 != +0 and NaN payloads count
    return (a.contiguous().view(at::kInt).reshape(-1) != b.contiguous().view(at::kInt).reshape(-1))
        .sum()
        .item<int64_t>();
  }
  if (a.scalar_type() == at::kBFloat16) {
    return (a.contiguous().view(at::kShort).reshape(-1) !=
            b.contiguous().view(at::kShort).reshape(-1))
        .sum()
        .item<int64_t>();
  }
  return (a.reshape(-1) != b.reshape(-1)).sum().item<int64_t>();
}

TEST(Nf4Reference, QuantizationIsByteIdenticalToBitsandbytes) {
  TempDir dir("loom-nf4-ref");
  const auto file = dir.path() / "ref.safetensors";
  auto py = testing::runPythonScript("nf4_reference.py", {"make", file.string()});
  ASSERT_EQ(py.exit_code, 0) << py.output;
  SafetensorsFile ref(file);
  EXPECT_EQ(mismatches(at::tensor(dynamicMap8Bit(), at::kFloat), ref.tensor("dynamic_map")), 0);

  int cases = 0;
  while (ref.contains("w." + std::to_string(cases))) ++cases;
  ASSERT_GE(cases, 8);
  for (int i = 0; i < cases; ++i) {
    const std::string k = std::to_string(i);
    const at::Tensor w = ref.tensor("w." + k);
    SCOPED_TRACE("case " + k + " shape " + c10::str(w.sizes()) + " " +
                 c10::toString(w.scalar_type()));
    const Nf4Weight q = quantizeNf4(w);
    ASSERT_TRUE(q.doubleQuantized());
    const int64_t bad_packed = mismatches(q.packed, ref.tensor("packed." + k));
    const int64_t bad_absmax = mismatches(q.absmax, ref.tensor("absmax." + k));
    const int64_t bad_nested = mismatches(q.nested_absmax, ref.tensor("nested_absmax." + k));
    const float ref_offset = ref.tensor("offset." + k).item<float>();
    const at::Tensor f32 = dequantizeNf4(q, at::kFloat);
    const at::Tensor bf16 = dequantizeNf4(q, at::kBFloat16);
    const int64_t bad_f32 = mismatches(f32, ref.tensor("deq_f32." + k));
    const int64_t bad_bf16 = mismatches(bf16, ref.tensor("deq_bf16." + k));
    std::cout << "nf4 case " << i << " " << w.sizes() << " " << w.scalar_type() << ": "
              << q.packed.numel() << " bytes, " << q.absmax.numel() << " blocks; mismatches packed "
              << bad_packed << ", absmax codes " << bad_absmax << ", nested absmax " << bad_nested
              << ", offset " << (q.offset == ref_offset ? 0 : 1) << ", dequant fp32 " << bad_f32
              << ", bf16 " << bad_bf16 << "\n";
    EXPECT_EQ(bad_packed, 0);
    EXPECT_EQ(bad_absmax, 0);
    EXPECT_EQ(bad_nested, 0);
    EXPECT_EQ(q.offset, ref_offset) << std::hexfloat << q.offset << " vs " << ref_offset;
    EXPECT_EQ(bad_f32, 0);
    EXPECT_EQ(bad_bf16, 0);
    EXPECT_EQ(f32.sizes(), w.sizes());
  }
}

}  // namespace
}  // namespace loom

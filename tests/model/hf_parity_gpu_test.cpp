// Label gpu: Loom's bf16 logits on a CUDA device against transformers' bf16 logits on the
// same device and padded batch (bf16_parity.hpp). Loom runs its GPU path: the packed-row
// kernel the trainer would choose (flash varlen on sm_80+), torch's fused RMSNorm, swiglu.
// Skips without a CUDA device or without bf16.

#include <gtest/gtest.h>

#include "bf16_parity.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

TEST(HfParityGpu, Bf16LogitsMatchTransformersBf16) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const auto gpu = listCudaDevices().front();
  if (!gpu.hasBf16()) GTEST_SKIP() << "the GPU has no bf16 (" << gpu.capability() << ")";
  testing::expectBf16LogitsLikeTransformers(c10::Device(c10::kCUDA, gpu.index), gpu.major,
                                            /*identical=*/false);
}

}  // namespace
}  // namespace loom

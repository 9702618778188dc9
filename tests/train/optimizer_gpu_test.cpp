// Label gpu: Loom's fused AdamW (`_fused_adamw_` over all masters in one call, CUDA's own
// kernel) against libtorch's per-tensor AdamW on the CPU, fp32: within 1e-6 relative after
// each of six steps. Both compute the same formula in fp32; the kernels order a few scalar
// operations differently, a few ulps, far below what a wrong moment, bias correction or decay
// would move (>= 1e-3 relative after one step at these learning rates).
#include <gtest/gtest.h>

#include "adamw_reference.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

TEST(OptimizerGpu, FusedAdamWOnCudaEqualsThePerTensorStepInFp32) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  testing::adamw::expectFusedAdamWEqualsPerTensor(c10::Device(c10::kCUDA, 0), 1e-6);
}

}  // namespace
}  // namespace loom

// Label gpu: gradient buckets started from backward hooks on NCCL's communication stream,
// one rank on cuda:0 (a singleton World). The reference is the same gradients computed by
// autograd::grad, accumulated in fp32. Skips without a CUDA device.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/comm/communicator.hpp"
#include "loom/comm/device.hpp"
#include "loom/comm/world.hpp"
#include "loom/train/grad_sync.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

TEST(GradSyncGpu, OverlappedNcclBucketsMatchAutograd) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  World& world = testing::singletonWorld();
  auto comm = makeCommunicator(Backend::kNccl, world, "cuda:0");
  ASSERT_TRUE(comm->canStartFromBackward(c10::Device(c10::kCUDA, 0)));
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    const auto on = torch::TensorOptions().device(torch::kCUDA, 0);
    torch::manual_seed(1);
    // A stack of layers big enough for several 1 MiB buckets.
    std::vector<torch::Tensor> params, masters;
    for (int l = 0; l < 8; ++l) {
      params.push_back((torch::randn({512, 512}, on) * 0.05).to(dtype).requires_grad_());
    }
    for (auto& p : params) {
      masters.push_back(dtype == torch::kFloat ? p : p.detach().to(torch::kFloat).clone());
    }
    auto loss = [&](const torch::Tensor& x) {
      torch::Tensor h = x.to(dtype);
      for (auto& p : params) h = torch::tanh(h.matmul(p));
      return h.to(torch::kFloat).pow(2).sum();
    };
    std::vector<torch::Tensor> batches = {torch::randn({64, 512}, on), torch::randn({32, 512}, on)};
    std::vector<torch::Tensor> expected;
    for (auto& p : params) expected.push_back(torch::zeros(p.sizes(), on.dtype(torch::kFloat)));
    for (auto& x : batches) {
      auto g = torch::autograd::grad({loss(x)}, params);
      for (size_t i = 0; i < g.size(); ++i) expected[i] += g[i].to(torch::kFloat);
    }
    GradSync sync(params, *comm, /*bucket_bytes=*/1 << 20, masters, /*overlap=*/true);
    ASSERT_GE(sync.numBuckets(), 4);
    sync.beginStep();
    for (size_t k = 0; k < batches.size(); ++k) {
      sync.beginMicroBatch(k + 1 == batches.size());
      loss(batches[k]).backward();
    }
    sync.reduce(2.0);
    EXPECT_EQ(sync.bucketsStartedInBackward(), sync.numBuckets());
    for (size_t i = 0; i < params.size(); ++i) {
      const double err = ((masters[i].grad() - expected[i] / 2.0).abs().max() /
                          (expected[i].abs().max() / 2.0 + 1e-30))
                             .item<double>();
      EXPECT_LE(err, 1e-6) << c10::toString(dtype) << " param " << i;
    }
  }
}

}  // namespace
}  // namespace loom

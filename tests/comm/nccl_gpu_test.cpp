// Label gpu: one NCCL rank (a singleton World) on cuda:0; skips without a CUDA device.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/comm/communicator.hpp"
#include "loom/comm/device.hpp"
#include "loom/comm/world.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

TEST(NcclGpu, OneRankCollectivesAreIdentities) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  World& world = testing::singletonWorld();
  auto comm = makeCommunicator(Backend::kNccl, world, "cuda:0");
  ASSERT_EQ(comm->size(), 1);
  auto t = torch::arange(0, 1 << 20,
                         torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA, 0));
  auto before = t.clone();
  comm->allReduceSum(t);
  comm->barrier();
  EXPECT_TRUE(torch::equal(t, before));
  auto all = comm->allGather(t.slice(0, 0, 4));
  EXPECT_EQ(all.sizes(), (std::vector<int64_t>{1, 4}));
  EXPECT_TRUE(torch::equal(all[0], before.slice(0, 0, 4)));
  auto b =
      torch::full({3}, 2.5, torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA, 0));
  comm->broadcast(b, 0);
  EXPECT_EQ(b[2].item<float>(), 2.5f);
}

}  // namespace
}  // namespace loom

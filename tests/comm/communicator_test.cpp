// Runs under mpiexec -n N: expected values are computed from rank and size.
#include "loom/comm/communicator.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/comm/world.hpp"
#include "support/mpi_test_main.hpp"

namespace loom {
namespace {

TEST(MpiCommunicator, AllReduceSumMatchesTheReferenceSum) {
  auto comm = makeMpiCommunicator(testing::world());
  const int n = comm->size();
  const int r = comm->rank();
  // Each rank holds (rank + 1) * [1, 2, ..., 1000]: the sum is n(n+1)/2 * [1..1000].
  auto base = torch::arange(1, 1001, torch::kFloat);
  auto t = base * static_cast<float>(r + 1);
  comm->allReduceSum(t);
  EXPECT_TRUE(torch::equal(t, base * static_cast<float>(n * (n + 1) / 2)));

  auto i64 = torch::full({7}, static_cast<int64_t>(1) << 40, torch::kLong) * (r + 1);
  comm->allReduceSum(i64);
  EXPECT_EQ(i64[6].item<int64_t>(), (static_cast<int64_t>(1) << 40) * n * (n + 1) / 2);

  // 16-bit tensors are reduced in fp32, then rounded once.
  auto bf = torch::full({5}, 0.1f + r, torch::kBFloat16);
  auto expected = torch::zeros({5}, torch::kFloat);
  for (int k = 0; k < n; ++k)
    expected += torch::full({5}, 0.1f + k, torch::kBFloat16).to(torch::kFloat);
  comm->allReduceSum(bf);
  EXPECT_TRUE(torch::equal(bf, expected.to(torch::kBFloat16)));
}

TEST(MpiCommunicator, BroadcastAndAllGather) {
  auto comm = makeMpiCommunicator(testing::world());
  const int n = comm->size();
  auto t = torch::full({2, 3}, static_cast<double>(comm->rank()), torch::kDouble);
  comm->broadcast(t, n - 1);
  EXPECT_TRUE(torch::equal(t, torch::full({2, 3}, static_cast<double>(n - 1), torch::kDouble)));

  auto mine = torch::tensor({comm->rank() * 10, comm->rank() * 10 + 1}, torch::kInt);
  auto all = comm->allGather(mine);
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{n, 2}));
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(all[k][0].item<int>(), k * 10);
    EXPECT_EQ(all[k][1].item<int>(), k * 10 + 1);
  }
  comm->barrier();
}

TEST(MpiCommunicator, NonContiguousTensorsAreWrittenBack) {
  auto comm = makeMpiCommunicator(testing::world());
  auto big = torch::ones({4, 4}, torch::kFloat);
  auto column = big.select(1, 2);  // a strided view
  comm->allReduceSum(column);
  EXPECT_EQ(big[3][2].item<float>(), static_cast<float>(comm->size()));
  EXPECT_EQ(big[3][1].item<float>(), 1.0f);
}

TEST(MpiCommunicator, StartedSumsEqualBlockingSumsAfterTheWait) {
  auto comm = makeMpiCommunicator(testing::world());
  const int r = comm->rank();
  EXPECT_TRUE(comm->canStartFromBackward(c10::Device(c10::kCPU)));
  EXPECT_FALSE(comm->canStartFromBackward(c10::Device(c10::kCUDA, 0)));
  torch::manual_seed(3 + r);  // different values on every rank
  // fp32 and fp64 are started non-blocking; bf16 takes the blocking path inside start.
  std::vector<torch::Tensor> started = {torch::randn({1000}), torch::randn({7}, torch::kDouble),
                                        torch::randn({33}).to(torch::kBFloat16),
                                        torch::randn({50000})};
  std::vector<torch::Tensor> reference;
  for (auto& t : started) {
    reference.push_back(t.clone());
    comm->allReduceSum(reference.back());
  }
  for (auto& t : started) comm->startAllReduceSum(t);
  comm->waitStarted();
  for (size_t i = 0; i < started.size(); ++i) {
    EXPECT_TRUE(
        torch::allclose(started[i].to(torch::kDouble), reference[i].to(torch::kDouble), 1e-6, 1e-6))
        << "tensor " << i;
  }
  comm->waitStarted();  // nothing pending: returns at once
}

}  // namespace
}  // namespace loom

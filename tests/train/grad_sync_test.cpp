// Runs under mpiexec -n N: each rank's gradients are (rank + 1) * g, so the reduced
// gradient is N(N+1)/2 * g / divisor on every rank.
#include "loom/train/grad_sync.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "loom/comm/communicator.hpp"
#include "loom/comm/world.hpp"
#include "support/mpi_test_main.hpp"

namespace loom {
namespace {

std::vector<torch::Tensor> makeParams() {
  torch::manual_seed(7);  // same values on every rank
  return {torch::randn({3, 5}).requires_grad_(), torch::randn({1000}).requires_grad_(),
          torch::randn({4, 4, 2}, torch::kBFloat16).requires_grad_(),
          torch::randn({17}).requires_grad_()};
}

TEST(GradSync, SumsOverRanksInFp32AndDividesByTheGlobalCount) {
  auto comm = makeMpiCommunicator(testing::world());
  const int n = comm->size();
  const int r = comm->rank();
  auto params = makeParams();
  torch::manual_seed(11);
  std::vector<torch::Tensor> base;
  for (auto& p : params) base.push_back(torch::randn(p.sizes()));
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].mutable_grad() = (base[i] * (r + 1)).to(params[i].scalar_type());
  }
  // Small buckets: several all-reduces, parameters split across bucket boundaries.
  GradSync sync(params, *comm, /*bucket_bytes=*/4096);
  EXPECT_GT(sync.numBuckets(), 1);
  const double divisor = 37.0;
  sync.reduce(divisor);
  const double factor = n * (n + 1) / 2.0 / divisor;
  for (size_t i = 0; i < params.size(); ++i) {
    // The reference: the same sum computed here in fp32 from each rank's own values.
    torch::Tensor expected = torch::zeros(base[i].sizes());
    for (int k = 0; k < n; ++k)
      expected += (base[i] * (k + 1)).to(params[i].scalar_type()).to(torch::kFloat);
    expected = (expected / divisor).to(params[i].scalar_type());
    EXPECT_TRUE(
        torch::allclose(params[i].grad().to(torch::kFloat), expected.to(torch::kFloat), 1e-6, 1e-7))
        << "param " << i << " factor " << factor;
  }
}

TEST(GradSync, ARankWithoutGradientsContributesZeros) {
  auto comm = makeMpiCommunicator(testing::world());
  auto params = makeParams();
  if (comm->rank() != 0) {
    for (auto& p : params) p.mutable_grad() = torch::ones_like(p);
  }
  GradSync sync(params, *comm);
  sync.reduce(1.0);
  for (auto& p : params) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().to(torch::kFloat).max().item<float>(), static_cast<float>(comm->size() - 1));
  }
}

TEST(GradSync, ClippingMatchesTheClosedForm) {
  auto comm = makeMpiCommunicator(testing::world());
  std::vector<torch::Tensor> params = {torch::zeros({2}, torch::requires_grad()),
                                       torch::zeros({1}, torch::requires_grad())};
  params[0].mutable_grad() = torch::tensor({3.0f, 0.0f});
  params[1].mutable_grad() = torch::tensor({4.0f});
  GradSync sync(params, *comm);
  EXPECT_DOUBLE_EQ(sync.gradNorm(), 5.0);
  EXPECT_DOUBLE_EQ(sync.clip(10.0), 5.0);  // below the limit: untouched
  EXPECT_FLOAT_EQ(params[0].grad()[0].item<float>(), 3.0f);
  EXPECT_DOUBLE_EQ(sync.clip(1.0), 5.0);
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_FLOAT_EQ(params[0].grad()[0].item<float>(), static_cast<float>(3.0 * coef));
  EXPECT_FLOAT_EQ(params[1].grad()[0].item<float>(), static_cast<float>(4.0 * coef));
  EXPECT_NEAR(sync.gradNorm(), 1.0, 1e-6);
}

}  // namespace
}  // namespace loom

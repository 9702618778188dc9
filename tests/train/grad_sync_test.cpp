// Runs under mpiexec -n N. The reference for a reduced gradient is the sum, computed here
// in fp32 in rank order, of every rank's own gradient (gathered), divided by the divisor.
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

/// fp32 masters for 16-bit parameters; fp32 parameters are their own.
std::vector<torch::Tensor> mastersOf(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> masters;
  for (const auto& p : params) {
    masters.push_back(p.scalar_type() == torch::kFloat ? p : p.detach().to(torch::kFloat).clone());
  }
  return masters;
}

/// Sum over ranks of `local` (this rank's gradient), in fp32, in rank order, / divisor.
torch::Tensor referenceSum(Communicator& comm, const torch::Tensor& local, double divisor) {
  const torch::Tensor all = comm.allGather(local.detach().to(torch::kFloat).contiguous());
  torch::Tensor sum = torch::zeros(local.sizes());
  for (int k = 0; k < comm.size(); ++k) sum += all[k];
  return sum / divisor;
}

double maxRelative(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max() /
          (b.to(torch::kDouble).abs().max() + 1e-30))
      .item<double>();
}

TEST(GradSync, SumsOverRanksInFp32AndDividesByTheGlobalCount) {
  auto comm = makeMpiCommunicator(testing::world());
  const int r = comm->rank();
  auto params = makeParams();
  auto masters = mastersOf(params);
  // Small buckets: several all-reduces, parameters split across bucket boundaries.
  GradSync sync(params, *comm, /*bucket_bytes=*/4096, masters);
  EXPECT_GT(sync.numBuckets(), 1);
  torch::manual_seed(11 + r);
  std::vector<torch::Tensor> local;
  for (size_t i = 0; i < params.size(); ++i) {
    local.push_back(torch::randn(params[i].sizes()).to(params[i].scalar_type()));
    params[i].mutable_grad() = local.back().clone();
  }
  const double divisor = 37.0;
  sync.reduce(divisor);
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor expected = referenceSum(*comm, local[i], divisor);
    ASSERT_TRUE(masters[i].grad().defined());
    EXPECT_EQ(masters[i].grad().scalar_type(), torch::kFloat);
    EXPECT_LE(maxRelative(masters[i].grad(), expected), 1e-6) << "param " << i;
  }
}

TEST(GradSync, ARankWithoutGradientsContributesZeros) {
  auto comm = makeMpiCommunicator(testing::world());
  auto params = makeParams();
  auto masters = mastersOf(params);
  GradSync sync(params, *comm, 25 << 20, masters);
  if (comm->rank() != 0) {
    for (auto& p : params) p.mutable_grad() = torch::ones_like(p);
  }
  sync.reduce(1.0);
  for (auto& m : masters) {
    ASSERT_TRUE(m.grad().defined());
    EXPECT_EQ(m.grad().max().item<float>(), static_cast<float>(comm->size() - 1));
    EXPECT_EQ(m.grad().min().item<float>(), static_cast<float>(comm->size() - 1));
  }
}

/// A small chain model: every parameter gets a gradient from every micro-batch.
struct Chain {
  std::vector<torch::Tensor> params;
  explicit Chain(torch::ScalarType dtype) {
    torch::manual_seed(5);
    params = {torch::randn({16, 12}).mul(0.3).to(dtype).requires_grad_(),
              torch::randn({12}).to(dtype).requires_grad_(),
              torch::randn({12, 12}).mul(0.3).to(dtype).requires_grad_(),
              torch::randn({12, 3}).mul(0.3).to(dtype).requires_grad_()};
  }
  /// Sum of a loss over `x` [rows, 16].
  torch::Tensor loss(const torch::Tensor& x) const {
    auto h = torch::tanh(x.to(params[0].scalar_type()).matmul(params[0]) + params[1]);
    h = torch::tanh(h.matmul(params[2]));
    return h.matmul(params[3]).to(torch::kFloat).pow(2).sum();
  }
};

/// This rank's micro-batches: rank r runs `counts[r % counts.size()]` of them.
std::vector<torch::Tensor> microBatches(int rank, int count) {
  torch::manual_seed(100 + rank);
  std::vector<torch::Tensor> out;
  for (int k = 0; k < count; ++k) out.push_back(torch::randn({3 + k, 16}));
  return out;
}

/// Runs one step through the hooks: micro-batches, beginMicroBatch(last), backward.
void runStep(GradSync& sync, const Chain& model, const std::vector<torch::Tensor>& batches) {
  sync.beginStep();
  for (size_t k = 0; k < batches.size(); ++k) {
    sync.beginMicroBatch(k + 1 == batches.size());
    model.loss(batches[k]).backward();
  }
}

/// This rank's accumulated gradients computed without GradSync (autograd::grad does not
/// touch .grad, so no hook runs).
std::vector<torch::Tensor> localGradients(const Chain& model,
                                          const std::vector<torch::Tensor>& batches) {
  std::vector<torch::Tensor> sum;
  for (const auto& p : model.params) sum.push_back(torch::zeros(p.sizes()));
  for (const auto& x : batches) {
    auto g = torch::autograd::grad({model.loss(x)}, model.params);
    for (size_t i = 0; i < g.size(); ++i) sum[i] += g[i].to(torch::kFloat);
  }
  return sum;
}

void expectOverlappedStepMatchesTheReference(torch::ScalarType dtype, std::vector<int> counts) {
  auto comm = makeMpiCommunicator(testing::world());
  const int r = comm->rank();
  Chain model(dtype);
  auto masters = mastersOf(model.params);
  // One parameter per bucket or so: buckets start one by one during backward.
  GradSync sync(model.params, *comm, /*bucket_bytes=*/600, masters, /*overlap=*/true);
  ASSERT_GE(sync.numBuckets(), 3);
  const auto batches = microBatches(r, counts[r % counts.size()]);
  const auto local = localGradients(model, batches);
  for (int step = 0; step < 2; ++step) {  // the second step reuses the zeroed buckets
    runStep(sync, model, batches);
    sync.reduce(13.0);
    // Every bucket was started from backward on a rank that ran one; none on a rank without.
    EXPECT_EQ(sync.bucketsStartedInBackward(), batches.empty() ? 0 : sync.numBuckets());
    for (size_t i = 0; i < masters.size(); ++i) {
      const torch::Tensor expected = referenceSum(*comm, local[i], 13.0);
      EXPECT_LE(maxRelative(masters[i].grad(), expected), 1e-6)
          << "step " << step << " param " << i << " rank " << r;
      if (dtype != torch::kFloat) {
        EXPECT_FALSE(model.params[i].grad().defined()) << "16-bit gradient not freed";
      }
    }
  }
}

TEST(GradSync, OverlappedBucketsFromBackwardMatchTheReferenceSum) {
  // Rank 0 accumulates 3 micro-batches, rank 1 one, rank 2 two.
  expectOverlappedStepMatchesTheReference(torch::kFloat, {3, 1, 2});
}

TEST(GradSync, ARankWithNoMicroBatchesStartsItsBucketsInOrderAfterTheOthers) {
  expectOverlappedStepMatchesTheReference(torch::kFloat, {0, 2, 1});
}

TEST(GradSync, SixteenBitGradientsAccumulateInFp32Slots) {
  // Reference: the bf16 gradients of each micro-batch summed in fp32, as the slots do.
  expectOverlappedStepMatchesTheReference(torch::kBFloat16, {2, 3});
}

TEST(GradSync, AParameterWithoutGradientInTheLastBackwardIsStillReduced) {
  auto comm = makeMpiCommunicator(testing::world());
  Chain model(torch::kFloat);
  GradSync sync(model.params, *comm, /*bucket_bytes=*/600);
  // Micro-batch 1 uses every parameter; micro-batch 2 (the last) leaves out params[3].
  sync.beginStep();
  sync.beginMicroBatch(false);
  const auto x = microBatches(comm->rank(), 1)[0];
  model.loss(x).backward();
  sync.beginMicroBatch(true);
  auto h = torch::tanh(x.matmul(model.params[0]) + model.params[1]);
  torch::tanh(h.matmul(model.params[2])).sum().backward();
  sync.reduce(1.0);
  // Buckets after the one holding params[3] waited for reduce(); the sums are complete.
  EXPECT_LT(sync.bucketsStartedInBackward(), sync.numBuckets());
  auto g1 = torch::autograd::grad({model.loss(x)}, model.params);
  auto h2 = torch::tanh(x.matmul(model.params[0]) + model.params[1]);
  auto g2 = torch::autograd::grad({torch::tanh(h2.matmul(model.params[2])).sum()},
                                  {model.params[0], model.params[1], model.params[2]});
  for (size_t i = 0; i < model.params.size(); ++i) {
    torch::Tensor local = g1[i] + (i < 3 ? g2[i] : torch::zeros_like(g1[i]));
    EXPECT_LE(maxRelative(model.params[i].grad(), referenceSum(*comm, local, 1.0)), 1e-6) << i;
  }
}

TEST(GradSync, WithoutOverlapEverythingIsReducedAfterBackward) {
  auto comm = makeMpiCommunicator(testing::world());
  Chain model(torch::kFloat);
  GradSync sync(model.params, *comm, /*bucket_bytes=*/600, {}, /*overlap=*/false);
  const auto batches = microBatches(comm->rank(), 2);
  runStep(sync, model, batches);
  sync.reduce(4.0);
  EXPECT_EQ(sync.bucketsStartedInBackward(), 0);
  const auto local = localGradients(model, batches);
  for (size_t i = 0; i < model.params.size(); ++i) {
    EXPECT_LE(maxRelative(model.params[i].grad(), referenceSum(*comm, local[i], 4.0)), 1e-6) << i;
  }
}

TEST(GradSync, ClippingMatchesTheClosedForm) {
  auto comm = makeMpiCommunicator(testing::world());
  std::vector<torch::Tensor> params = {torch::zeros({2}, torch::requires_grad()),
                                       torch::zeros({1}, torch::requires_grad())};
  GradSync sync(params, *comm);
  params[0].mutable_grad() = torch::tensor({3.0f, 0.0f});
  params[1].mutable_grad() = torch::tensor({4.0f});
  sync.reduce(static_cast<double>(comm->size()));  // every rank has the same: the mean
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

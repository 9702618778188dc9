// Label gpu: the CUDA attention kernels for packed rows (flash-attention varlen, memory-
// efficient varlen) against the boolean-mask path computed in fp32 on the same inputs:
// outputs and q/k/v gradients, on rows of uneven documents with grouped-query heads.
// Skips without a CUDA device.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/comm/device.hpp"
#include "loom/model/attention.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

at::Tensor unevenDocuments() {
  // 4 rows of 256: documents of 17, 100, 139 | 256 | 1, 63, 64, 100, pad 28 | 200, pad 56
  std::vector<int64_t> lengths[] = {{17, 100, 139}, {256}, {1, 63, 64, 100, 28}, {200, 56}};
  std::vector<int64_t> d;
  for (int r = 0; r < 4; ++r) {
    int64_t id = 0, used = 0;
    const auto& row = lengths[r];
    for (size_t i = 0; i < row.size(); ++i) {
      const bool pad = (r == 2 && i == 4) || (r == 3 && i == 1);
      ++id;
      for (int64_t j = 0; j < row[i]; ++j) d.push_back(pad ? 0 : id);
      used += row[i];
    }
    EXPECT_EQ(used, 256);
  }
  return torch::tensor(d, torch::kLong).view({4, 256});
}

struct Result {
  at::Tensor out, dq, dk, dv;
};

Result run(AttentionBackend backend, at::ScalarType dtype, const at::Tensor& q0,
           const at::Tensor& k0, const at::Tensor& v0, const at::Tensor& dout,
           const at::Tensor& docs) {
  const c10::Device cuda(c10::kCUDA, 0);
  auto q = q0.to(cuda, dtype).requires_grad_(), k = k0.to(cuda, dtype).requires_grad_(),
       v = v0.to(cuda, dtype).requires_grad_();
  const auto in = prepareAttention(backend, docs.to(cuda), {}, 0, false, cuda);
  EXPECT_EQ(in.backend, backend);
  auto out = attend(in, q, k, v, 1.0 / std::sqrt(64.0));
  out.backward(dout.to(cuda, dtype));
  return {out.to(at::kFloat).cpu(), q.grad().to(at::kFloat).cpu(), k.grad().to(at::kFloat).cpu(),
          v.grad().to(at::kFloat).cpu()};
}

double relErr(const at::Tensor& a, const at::Tensor& b, const at::Tensor& real) {
  auto m = real.expand_as(a);
  return ((a - b).masked_select(m).abs().max() / b.masked_select(m).abs().max()).item<double>();
}

TEST(AttentionGpu, VarlenKernelsEqualTheMaskPath) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  torch::manual_seed(0);
  const auto docs = unevenDocuments();
  const auto q = torch::randn({4, 256, 8, 64}), k = torch::randn({4, 256, 2, 64}),
             v = torch::randn({4, 256, 2, 64}), dout = torch::randn({4, 256, 8, 64});
  const Result truth = run(AttentionBackend::kMask, at::kFloat, q, k, v, dout, docs);
  const auto real = docs.ne(0).view({4, 256, 1, 1});
  const int major = listCudaDevices().at(0).major;
  struct Case {
    AttentionBackend backend;
    at::ScalarType dtype;
    double bound;  // bf16 inputs carry 2^-8 relative rounding; fp32 is exact to ~1e-5
  };
  std::vector<Case> cases = {{AttentionBackend::kEfficientVarlen, at::kFloat, 1e-4},
                             {AttentionBackend::kEfficientVarlen, at::kBFloat16, 3e-2}};
  if (major >= 8) cases.push_back({AttentionBackend::kFlashVarlen, at::kBFloat16, 3e-2});
  for (const Case& c : cases) {
    const Result r = run(c.backend, c.dtype, q, k, v, dout, docs);
    const double eo = relErr(r.out, truth.out, real), eq = relErr(r.dq, truth.dq, real),
                 ek = relErr(r.dk, truth.dk, real), ev = relErr(r.dv, truth.dv, real);
    std::cout << toString(c.backend) << " " << c10::toString(c.dtype) << ": out " << eo << " dq "
              << eq << " dk " << ek << " dv " << ev << "\n";
    EXPECT_LE(eo, c.bound);
    EXPECT_LE(eq, c.bound);
    EXPECT_LE(ek, c.bound);
    EXPECT_LE(ev, c.bound);
  }
}

}  // namespace
}  // namespace loom

// The attention room on the CPU: packed documents never see each other, the causal path is
// exact for rows of one document, cu_seqlens follow the documents, and the per-rank choice.
// The CUDA kernels are compared with these paths in attention_gpu_test.cpp.

#include "loom/model/attention.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model_test_util.hpp"

namespace loom {
namespace {

using testing::maxAbsDiff;

/// Rows of uneven documents: row 0 = 5 + 9 + 2 tokens, row 1 = 16, row 2 = 3 + 10 + pad 3.
at::Tensor unevenDocuments() {
  std::vector<int64_t> d = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,  //
                            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  //
                            1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0};
  return torch::tensor(d, torch::kLong).view({3, 16});
}

/// Attention of each document alone (causal), written into its cells: the truth.
at::Tensor perDocument(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& documents, double scale) {
  // q [B, T, Hq, D], k/v [B, T, Hkv, D]
  auto out = torch::zeros_like(q);
  const auto [cu, longest] = cuSeqlensOf(documents);
  const int64_t t = q.size(1);
  auto flat = [&](const at::Tensor& x) { return x.reshape({-1, x.size(2), x.size(3)}); };
  auto fq = flat(q), fk = flat(k), fv = flat(v), fo = flat(out);
  for (int64_t s = 0; s + 1 < cu.size(0); ++s) {
    const int64_t a = cu[s].item<int64_t>(), b = cu[s + 1].item<int64_t>();
    EXPECT_EQ(a / t, (b - 1) / t);  // never across a row
    auto o = at::scaled_dot_product_attention(fq.slice(0, a, b).transpose(0, 1).unsqueeze(0),
                                              fk.slice(0, a, b).transpose(0, 1).unsqueeze(0),
                                              fv.slice(0, a, b).transpose(0, 1).unsqueeze(0), {},
                                              0.0, true, scale, true);
    fo.slice(0, a, b).copy_(o.squeeze(0).transpose(0, 1));
  }
  return out;
}

TEST(Attention, PackedDocumentsNeverAttendAcrossTheirBoundary) {
  torch::manual_seed(0);
  const auto docs = unevenDocuments();
  auto q = torch::randn({3, 16, 4, 8}), k = torch::randn({3, 16, 2, 8}),
       v = torch::randn({3, 16, 2, 8});
  const AttentionInputs in = prepareAttention(
      AttentionBackend::kAuto, docs, {}, 0, /*one_document_per_row=*/false, c10::Device(c10::kCPU));
  EXPECT_EQ(in.backend, AttentionBackend::kMask);
  const auto out = attend(in, q, k, v, 0.3);
  ASSERT_EQ(out.sizes(), q.sizes());
  const auto truth = perDocument(q, k, v, docs, 0.3);
  // Padding cells (document 0) attend among themselves; compare the documents' cells. fp32
  // softmax over <= 16 keys: a few ulps. A leak across a boundary moves outputs by O(0.1).
  const auto real = docs.ne(0).unsqueeze(-1).unsqueeze(-1).expand_as(out);
  EXPECT_LE(maxAbsDiff(out.masked_select(real), truth.masked_select(real)), 1e-5);
}

TEST(Attention, RowsOfOneDocumentTakeTheCausalPathWithTheSameResult) {
  torch::manual_seed(1);
  // Each row: one document, then padding.
  auto docs =
      torch::tensor({1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, torch::kLong).view({2, 8});
  auto q = torch::randn({2, 8, 4, 8}), k = torch::randn({2, 8, 4, 8}),
       v = torch::randn({2, 8, 4, 8});
  const c10::Device cpu(c10::kCPU);
  const auto causal = prepareAttention(AttentionBackend::kMask, docs, {}, 0, true, cpu);
  EXPECT_EQ(causal.backend, AttentionBackend::kSdpaCausal);
  const auto masked = prepareAttention(AttentionBackend::kMask, docs, {}, 0, false, cpu);
  EXPECT_EQ(masked.backend, AttentionBackend::kMask);
  const auto a = attend(causal, q, k, v, 0.25), b = attend(masked, q, k, v, 0.25);
  const auto real = docs.ne(0).unsqueeze(-1).unsqueeze(-1).expand_as(a);
  EXPECT_LE(maxAbsDiff(a.masked_select(real), b.masked_select(real)), 1e-5);
  // Without documents: causal too.
  EXPECT_EQ(prepareAttention(AttentionBackend::kMask, {}, {}, 0, false, cpu).backend,
            AttentionBackend::kSdpaCausal);
}

TEST(Attention, CuSeqlensCutAtEveryDocumentAndRowEnd) {
  const auto [cu, longest] = cuSeqlensOf(unevenDocuments());
  EXPECT_EQ(cu.scalar_type(), at::kInt);
  EXPECT_TRUE(torch::equal(cu, torch::tensor({0, 5, 14, 16, 32, 35, 45, 48}, torch::kInt)));
  EXPECT_EQ(longest, 16);
}

TEST(Attention, EachDeviceGetsTheKernelItCanRun) {
  EXPECT_EQ(packedAttentionFor(false, 0, at::kFloat, 128), AttentionBackend::kMask);
  EXPECT_EQ(packedAttentionFor(true, 9, at::kBFloat16, 128), AttentionBackend::kFlashVarlen);
  EXPECT_EQ(packedAttentionFor(true, 8, at::kHalf, 64), AttentionBackend::kFlashVarlen);
  EXPECT_EQ(packedAttentionFor(true, 9, at::kFloat, 128), AttentionBackend::kEfficientVarlen);
  EXPECT_EQ(packedAttentionFor(true, 7, at::kHalf, 128), AttentionBackend::kEfficientVarlen);
  EXPECT_EQ(packedAttentionFor(true, 6, at::kFloat, 128), AttentionBackend::kEfficientVarlen);
  EXPECT_EQ(packedAttentionFor(true, 9, at::kBFloat16, 512), AttentionBackend::kEfficientVarlen);
  EXPECT_THROW(prepareAttention(AttentionBackend::kFlashVarlen, unevenDocuments(), {}, 0, false,
                                c10::Device(c10::kCPU)),
               Error);
}

}  // namespace
}  // namespace loom

// Evaluation (src/train/evaluate.cpp): packed sums equal the losses of the samples run one by
// one, whatever the packing, micro-batch and read grouping; rank shares add up to the whole;
// LoRA dropout is off during evaluation and the training mode comes back.
#include "loom/train/evaluate.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "loom/data/hdf5_dataset.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/loss.hpp"
#include "model/model_test_util.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

constexpr int64_t kSeqLen = 32;

/// Sample lengths: one longer than kSeqLen (truncated), an empty one, tiny ones.
const std::vector<int64_t> kLengths{12, 40, 0, 5, 17, 2, 31, 9, 25, 16, 1, 32, 7};

/// Writes random samples (vocab 300) and returns them as the file stores them.
std::vector<Sample> writeData(const std::filesystem::path& path, uint32_t seed) {
  std::mt19937 rng(seed);
  Hdf5DatasetInfo info;
  info.vocab_size = 300;
  Hdf5DatasetWriter writer(path, info);
  std::vector<Sample> samples;
  for (size_t i = 0; i < kLengths.size(); ++i) {
    Sample s;
    for (int64_t t = 0; t < kLengths[i]; ++t) {
      s.tokens.push_back(static_cast<int32_t>(rng() % 300));
      // Sample 3 has no targets at all.
      s.loss_mask.push_back(i != 3 && t > 0 && rng() % 10 < 7 ? 1 : 0);
    }
    writer.append(s.tokens, s.loss_mask);
    samples.push_back(std::move(s));
  }
  writer.finish();
  return samples;
}

std::shared_ptr<CausalLm> tinyModel() {
  torch::manual_seed(11);
  auto model = std::make_shared<CausalLm>(testing::tinyConfig("qwen3"), DecoderOptions{});
  model->initRandom(0.1);
  return model;
}

/// The reference: each sample alone, cut to kSeqLen, one row, no packing code involved.
EvalResult oneByOne(CausalLm& model, const std::vector<Sample>& samples) {
  torch::NoGradGuard no_grad;
  model.eval();
  EvalResult r;
  for (const auto& s : samples) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(s.tokens.size()), kSeqLen);
    if (n == 0) continue;
    ++r.samples;
    r.tokens += n;
    if (static_cast<int64_t>(s.tokens.size()) > kSeqLen) ++r.truncated;
    auto tokens =
        torch::tensor(std::vector<int64_t>(s.tokens.begin(), s.tokens.begin() + n)).reshape({1, n});
    auto mask = torch::tensor(std::vector<int64_t>(s.loss_mask.begin(), s.loss_mask.begin() + n))
                    .reshape({1, n});
    DecoderInput in;
    in.tokens = tokens;
    const auto loss = causalLmLoss(model.hidden(in), model.lmHeadWeight(), tokens, mask, {});
    r.loss_sum += loss.sum.item<double>();
    r.loss_tokens += loss.count;
  }
  return r;
}

void expectSame(const EvalResult& got, const EvalResult& want, double rel_tol = 1e-5) {
  EXPECT_EQ(got.loss_tokens, want.loss_tokens);
  EXPECT_EQ(got.samples, want.samples);
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.truncated, want.truncated);
  const double rel = std::abs(got.loss_sum - want.loss_sum) / std::abs(want.loss_sum);
  std::cout << "  loss_sum " << got.loss_sum << " vs " << want.loss_sum << ": rel diff " << rel
            << "\n";
  EXPECT_LE(rel, rel_tol);
}

TEST(Evaluate, PackedSumsEqualSamplesRunAlone) {
  testing::TempDir dir("loom-eval");
  const auto samples = writeData(dir.path() / "eval.h5", 5);
  Hdf5Dataset dataset(dir.path() / "eval.h5", 300);
  auto model = tinyModel();
  const EvalResult want = oneByOne(*model, samples);
  ASSERT_GT(want.loss_tokens, 0);
  EXPECT_EQ(want.truncated, 1);

  for (bool packing : {true, false}) {
    for (int64_t micro_batch : {1, 3}) {
      for (int64_t per_read : {0, 2}) {
        SCOPED_TRACE("packing=" + std::to_string(packing) + " micro_batch=" +
                     std::to_string(micro_batch) + " per_read=" + std::to_string(per_read));
        EvalOptions options;
        options.micro_batch = micro_batch;
        options.samples_per_read = per_read;
        options.pad_id = 17;
        int64_t calls = 0;
        options.progress = [&](const EvalProgress& p) {
          ++calls;
          EXPECT_LE(p.samples_done, p.samples_total);
        };
        const EvalResult got = evaluateDataset(*model, dataset, kSeqLen, packing, options);
        expectSame(got, want);
        EXPECT_GT(calls, 0);
        EXPECT_NEAR(got.loss(), want.loss_sum / want.loss_tokens, 1e-5 * want.loss());
        EXPECT_NEAR(got.perplexity(), std::exp(got.loss()), 1e-9 * got.perplexity());
      }
    }
  }
}

TEST(Evaluate, RankSharesCoverEverySampleOnceAndAddUp) {
  testing::TempDir dir("loom-eval-share");
  writeData(dir.path() / "eval.h5", 6);
  Hdf5Dataset dataset(dir.path() / "eval.h5", 300);
  auto model = tinyModel();
  const BatchPlanner planner =
      BatchPlanner::fromDataset(dataset, evalPlannerConfig(kSeqLen, /*packing=*/true));
  const EvalResult whole = evaluateSamples(*model, dataset, planner, evalShare(planner, {1.0}, 0));

  for (const std::vector<double>& weights :
       {std::vector<double>{1, 1}, std::vector<double>{3, 1}, std::vector<double>{1, 0, 2}}) {
    std::vector<int64_t> seen;
    EvalResult sum;
    for (int r = 0; r < static_cast<int>(weights.size()); ++r) {
      const auto share = evalShare(planner, weights, r);
      if (weights[r] == 0) EXPECT_TRUE(share.empty());
      seen.insert(seen.end(), share.begin(), share.end());
      sum += evaluateSamples(*model, dataset, planner, share);
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> non_empty;
    for (int64_t i = 0; i < dataset.numSamples(); ++i) {
      if (dataset.sampleLength(i) > 0) non_empty.push_back(i);
    }
    EXPECT_EQ(seen, non_empty);
    expectSame(sum, whole);
  }
  const EvalResult none = evaluateSamples(*model, dataset, planner, {});
  EXPECT_EQ(none.loss_tokens, 0);
  EXPECT_EQ(none.loss_sum, 0.0);
  EXPECT_TRUE(std::isnan(none.loss()));
}

TEST(Evaluate, LoraDropoutIsOffAndTrainingModeIsRestored) {
  testing::TempDir dir("loom-eval-lora");
  const auto samples = writeData(dir.path() / "eval.h5", 7);
  Hdf5Dataset dataset(dir.path() / "eval.h5", 300);
  auto model = tinyModel();
  LoraSpec spec;
  spec.rank = 4;
  spec.dropout = 0.5;
  applyLora(*model, spec);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : loraState(*model)) p.normal_(0.0, 0.1);  // B non-zero too
  }
  model->train();
  const EvalResult a = evaluateDataset(*model, dataset, kSeqLen, true);
  EXPECT_TRUE(model->is_training());
  const EvalResult b = evaluateDataset(*model, dataset, kSeqLen, true);
  EXPECT_EQ(a.loss_sum, b.loss_sum);         // no dropout: bitwise the same
  expectSame(a, oneByOne(*model, samples));  // oneByOne runs in eval mode
}

}  // namespace
}  // namespace loom

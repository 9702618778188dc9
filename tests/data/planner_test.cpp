// The batch planner's contract with the trainer: epochs cover every sample once, global
// batches do not depend on ranks or weights, shares follow the weights, packing conserves
// tokens and keeps documents apart, the loss divisor is right, and a cursor resumes exactly.

#include "loom/data/planner.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

constexpr int64_t kSeqLen = 64;

/// A synthetic index: lengths 1..80 (some longer than kSeqLen, a few empty) and the loss
/// tokens of masks defined by maskAt() below.
struct Index {
  std::vector<int64_t> lengths;
  std::vector<int64_t> loss_within;  // targets within the first kSeqLen tokens
};

/// Sample i's mask at position p: a target when (i + p) % 3 != 0 (position 0 never counts).
uint8_t maskAt(int64_t i, int64_t p) { return (i + p) % 3 != 0 ? 1 : 0; }
int32_t tokenAt(int64_t i, int64_t p) { return static_cast<int32_t>(i * 1000 + p); }

Index makeIndex(int64_t n, uint32_t seed = 1) {
  Index index;
  uint32_t state = seed;
  for (int64_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    int64_t length = 1 + static_cast<int64_t>((state >> 8) % 80);
    if (i % 17 == 5) length = 0;
    index.lengths.push_back(length);
    int64_t targets = 0;
    for (int64_t p = 1; p < std::min(length, kSeqLen); ++p) targets += maskAt(i, p);
    index.loss_within.push_back(targets);
  }
  return index;
}

/// The token data a reader would return for `ids`.
SampleBatch makeData(const Index& index, const std::vector<int64_t>& ids) {
  SampleBatch batch;
  batch.sample_ids = ids;
  batch.offsets.push_back(0);
  for (int64_t id : ids) {
    for (int64_t p = 0; p < index.lengths[id]; ++p) {
      batch.tokens.push_back(tokenAt(id, p));
      batch.loss_mask.push_back(maskAt(id, p));
    }
    batch.offsets.push_back(static_cast<int64_t>(batch.tokens.size()));
  }
  return batch;
}

PlannerConfig byTokens(int64_t tokens = 600, uint64_t seed = 42) {
  PlannerConfig c;
  c.seq_len = kSeqLen;
  c.global_batch_tokens = tokens;
  c.seed = seed;
  return c;
}

PlannerConfig bySize(int64_t size = 16, uint64_t seed = 42) {
  PlannerConfig c;
  c.seq_len = kSeqLen;
  c.global_batch_size = size;
  c.seed = seed;
  return c;
}

BatchPlanner makePlanner(const Index& index, const PlannerConfig& config) {
  return BatchPlanner(index.lengths, index.loss_within, config);
}

const std::vector<std::vector<double>> kWeightSets = {{1}, {1, 1}, {3, 1}, {1, 2, 5}};

/// The global batches of the first `steps` steps.
std::vector<GlobalBatch> batches(const BatchPlanner& planner, int64_t steps,
                                 PlanCursor cursor = {}) {
  if (cursor.plan == PlanIdentity{}) cursor = planner.begin();
  std::vector<GlobalBatch> out;
  for (int64_t s = 0; s < steps; ++s) {
    out.push_back(planner.globalBatch(cursor));
    cursor = planner.next(cursor);
  }
  return out;
}

TEST(Planner, EveryNonEmptySampleOncePerEpoch) {
  const Index index = makeIndex(203);
  for (const auto& config : {byTokens(), bySize(), bySize(1000)}) {
    const BatchPlanner planner = makePlanner(index, config);
    EXPECT_EQ(planner.numEmpty(), 12);
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      std::multiset<int64_t> seen;
      PlanCursor cursor = planner.begin();
      for (int64_t e = 0; e < epoch; ++e) {
        for (int64_t s = 0; s < planner.stepsInEpoch(e); ++s) cursor = planner.next(cursor);
      }
      for (int64_t s = 0; s < planner.stepsInEpoch(epoch); ++s) {
        ASSERT_EQ(cursor.epoch, epoch);
        const GlobalBatch batch = planner.globalBatch(cursor);
        for (int r = 0; r < 3; ++r) {
          const auto plan = planner.planRank(batch, {1, 2, 5}, r, 4);
          seen.insert(plan.sample_ids.begin(), plan.sample_ids.end());
        }
        cursor = planner.next(cursor);
      }
      EXPECT_EQ(cursor.epoch, epoch + 1);
      for (int64_t i = 0; i < 203; ++i) {
        EXPECT_EQ(seen.count(i), index.lengths[i] > 0 ? 1u : 0u) << "sample " << i;
      }
    }
  }
}

TEST(Planner, GlobalBatchRules) {
  const Index index = makeIndex(203);
  const BatchPlanner tokens = makePlanner(index, byTokens(600));
  const auto order = tokens.epochOrder(0);
  int64_t position = 0;
  for (const auto& batch : batches(tokens, tokens.stepsInEpoch(0))) {
    ASSERT_FALSE(batch.sample_ids.empty());
    EXPECT_LE(batch.tokens, 600);
    EXPECT_TRUE(
        std::equal(batch.sample_ids.begin(), batch.sample_ids.end(), order.begin() + position));
    position += static_cast<int64_t>(batch.sample_ids.size());
    if (position < static_cast<int64_t>(order.size())) {  // full: the next one did not fit
      EXPECT_GT(batch.tokens + std::min(index.lengths[order[position]], kSeqLen), 600);
    }
  }
  EXPECT_EQ(position, static_cast<int64_t>(order.size()));

  // One sample larger than the budget still makes a step.
  const BatchPlanner tiny = makePlanner(index, byTokens(10));
  for (const auto& batch : batches(tiny, 20)) {
    EXPECT_TRUE(batch.sample_ids.size() == 1 || batch.tokens <= 10);
  }

  const BatchPlanner size = makePlanner(index, bySize(16));
  EXPECT_EQ(size.stepsInEpoch(0), (191 + 15) / 16);  // last partial batch kept
  const auto all = batches(size, size.stepsInEpoch(0));
  EXPECT_EQ(all.back().sample_ids.size(), 191u % 16);
  auto drop = bySize(16);
  drop.drop_last = true;
  EXPECT_EQ(makePlanner(index, drop).stepsInEpoch(0), 191 / 16);
  EXPECT_EQ(makePlanner(index, drop).stepsForEpochs(3), 3 * (191 / 16));
}

TEST(Planner, StepsForEpochsByTokensFollowsEachEpoch) {
  const Index index = makeIndex(150);
  const BatchPlanner planner = makePlanner(index, byTokens(700));
  int64_t total = 0;
  for (int64_t e = 0; e < 4; ++e) total += planner.stepsInEpoch(e);
  EXPECT_EQ(planner.stepsForEpochs(4), total);
  PlanCursor cursor = planner.begin();
  for (int64_t s = 0; s < total; ++s) cursor = planner.next(cursor);
  EXPECT_EQ(cursor.epoch, 4);
  EXPECT_EQ(cursor.step_in_epoch, 0);
  EXPECT_EQ(cursor.global_step, total);
}

TEST(Planner, SameSeedSamePlanOtherSeedOtherOrder) {
  const Index index = makeIndex(120);
  const auto a = makePlanner(index, byTokens(500, 7));
  const auto b = makePlanner(index, byTokens(500, 7));
  const auto c = makePlanner(index, byTokens(500, 8));
  EXPECT_EQ(a.epochOrder(0), b.epochOrder(0));
  EXPECT_EQ(a.epochOrder(3), b.epochOrder(3));
  EXPECT_NE(a.epochOrder(0), c.epochOrder(0));
  EXPECT_NE(a.epochOrder(0), a.epochOrder(1)) << "each epoch needs its own order";
  const auto ba = batches(a, 30);
  const auto bb = batches(b, 30);
  for (size_t s = 0; s < ba.size(); ++s) EXPECT_EQ(ba[s].sample_ids, bb[s].sample_ids);

  auto sequential = byTokens(500, 7);
  sequential.shuffle = false;
  const auto order = makePlanner(index, sequential).epochOrder(2);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

TEST(Planner, ShuffleIsPortable) {
  // A fixed expectation: the order must not change with the compiler or standard library
  // (checkpoints resumed on another machine rely on it). The values come from an
  // independent Python implementation of splitmix64 + Fisher-Yates as described in planner.hpp.
  std::vector<int64_t> lengths(10, 5);
  std::vector<int64_t> loss(10, 2);
  PlannerConfig config = bySize(3, 42);
  const BatchPlanner planner(lengths, loss, config);
  EXPECT_EQ(planner.epochOrder(0), (std::vector<int64_t>{8, 1, 9, 0, 5, 7, 6, 4, 2, 3}));
  EXPECT_EQ(planner.epochOrder(1), (std::vector<int64_t>{9, 0, 6, 1, 5, 7, 8, 2, 4, 3}));
}

TEST(Planner, GlobalBatchesIndependentOfRanksAndWeights) {
  const Index index = makeIndex(240);
  for (const auto& config : {byTokens(), bySize()}) {
    const BatchPlanner planner = makePlanner(index, config);
    PlanCursor cursor = planner.begin();
    for (int64_t s = 0; s < 40; ++s) {
      const GlobalBatch batch = planner.globalBatch(cursor);
      for (const auto& weights : kWeightSets) {
        std::vector<int64_t> joined;
        int64_t tokens = 0;
        int64_t loss = 0;
        for (int r = 0; r < static_cast<int>(weights.size()); ++r) {
          // Micro-batch sizes differ per rank, as on unequal devices.
          const auto plan = planner.planRank(batch, weights, r, 1 + r * 3);
          EXPECT_EQ(plan.global_tokens, batch.tokens);
          EXPECT_EQ(plan.global_loss_tokens, batch.loss_tokens);
          joined.insert(joined.end(), plan.sample_ids.begin(), plan.sample_ids.end());
          tokens += plan.local_tokens;
          loss += plan.local_loss_tokens;
        }
        // Consecutive runs in rank order: their concatenation is the global batch.
        EXPECT_EQ(joined, batch.sample_ids) << "step " << s << " ranks " << weights.size();
        EXPECT_EQ(tokens, batch.tokens);
        EXPECT_EQ(loss, batch.loss_tokens);
      }
      cursor = planner.next(cursor);
    }
  }
}

TEST(Planner, RankSharesFollowWeightsWithinOneSample) {
  const Index index = makeIndex(300, 5);
  const BatchPlanner planner = makePlanner(index, byTokens(2000));
  const std::vector<std::vector<double>> weight_sets = {
      {1}, {1, 1}, {3, 1}, {1, 2, 5}, {0.3, 0, 0.7}, {1, 1, 1, 1, 1, 1, 1}, {0, 1}};
  PlanCursor cursor = planner.begin();
  for (int64_t s = 0; s < 25; ++s) {
    const GlobalBatch batch = planner.globalBatch(cursor);
    int64_t longest = 0;
    for (int64_t id : batch.sample_ids)
      longest = std::max(longest, std::min(index.lengths[id], kSeqLen));
    for (const auto& weights : weight_sets) {
      const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
      const auto shares = planner.splitAcrossRanks(batch, weights);
      for (size_t r = 0; r < weights.size(); ++r) {
        int64_t tokens = 0;
        for (int64_t id : shares[r]) tokens += std::min(index.lengths[id], kSeqLen);
        const double target = static_cast<double>(batch.tokens) * weights[r] / total;
        EXPECT_LE(std::abs(static_cast<double>(tokens) - target), static_cast<double>(longest))
            << "step " << s << " rank " << r << " of " << weights.size();
        if (weights[r] == 0) EXPECT_TRUE(shares[r].empty());
      }
    }
    cursor = planner.next(cursor);
  }
}

TEST(Planner, ReweightingKeepsTheGlobalBatch) {
  const Index index = makeIndex(200);
  const BatchPlanner planner = makePlanner(index, byTokens());
  const auto reference = batches(planner, 20);
  PlanCursor cursor = planner.begin();
  for (int64_t s = 0; s < 20; ++s) {
    // A balancer changing weights every step.
    const std::vector<double> weights = {1.0 + static_cast<double>(s % 4), 2.5};
    std::vector<int64_t> joined;
    for (int r = 0; r < 2; ++r) {
      const auto plan = planner.planRank(planner.globalBatch(cursor), weights, r, 2);
      joined.insert(joined.end(), plan.sample_ids.begin(), plan.sample_ids.end());
    }
    EXPECT_EQ(joined, reference[static_cast<size_t>(s)].sample_ids);
    cursor = planner.next(cursor);
  }
}

TEST(Planner, ResumedCursorEqualsUninterruptedPlan) {
  const Index index = makeIndex(150);
  for (const auto& config : {byTokens(700), bySize(24)}) {
    const BatchPlanner planner = makePlanner(index, config);
    const int64_t total = planner.stepsForEpochs(2) + 3;  // crosses two epoch boundaries
    const auto straight = batches(planner, total);
    for (int64_t stop :
         {int64_t{1}, planner.stepsInEpoch(0) - 1, planner.stepsInEpoch(0), total - 2}) {
      PlanCursor cursor = planner.begin();
      for (int64_t s = 0; s < stop; ++s) cursor = planner.next(cursor);
      // Saved in a checkpoint, read by a new process with a new planner.
      const std::string saved = cursor.toString();
      const BatchPlanner resumed_planner = makePlanner(index, config);
      const PlanCursor resumed = PlanCursor::fromString(saved);
      EXPECT_EQ(resumed, cursor);
      const auto rest = batches(resumed_planner, total - stop, resumed);
      for (int64_t s = stop; s < total; ++s) {
        const auto& a = straight[static_cast<size_t>(s)];
        const auto& b = rest[static_cast<size_t>(s - stop)];
        EXPECT_EQ(a.sample_ids, b.sample_ids) << "step " << s << " after resume at " << stop;
        EXPECT_EQ(a.cursor, b.cursor);
        EXPECT_EQ(b.cursor.global_step, s);
      }
    }
  }
}

TEST(Planner, CursorFromAnotherPlanRefused) {
  const Index index = makeIndex(150);
  const BatchPlanner planner = makePlanner(index, byTokens(700, 1));
  const PlanCursor cursor = planner.next(planner.next(planner.begin()));
  auto expectRefused = [&](const BatchPlanner& other, const std::string& part) {
    try {
      other.globalBatch(cursor);
      ADD_FAILURE() << "expected an InputError mentioning " << part;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expectRefused(makePlanner(index, byTokens(700, 2)), "seed 1 -> 2");
  expectRefused(makePlanner(index, byTokens(800, 1)), "global_batch_tokens 700 -> 800");
  expectRefused(makePlanner(makeIndex(150, 9), byTokens(700, 1)), "index");
  expectRefused(makePlanner(makeIndex(151), byTokens(700, 1)), "num_samples 150 -> 151");

  PlanCursor moved = cursor;
  moved.position += 1;
  EXPECT_THROW(planner.globalBatch(moved), InputError);
  PlanCursor beyond = cursor;
  beyond.step_in_epoch = 10000;
  EXPECT_THROW(planner.next(beyond), InputError);

  EXPECT_THROW(PlanCursor::fromString("{not json"), InputError);
  auto json = cursor.toJson();
  json.erase("epoch");
  EXPECT_THROW(PlanCursor::fromJson(json), InputError);
  json = cursor.toJson();
  json["plan"]["seed"] = "one";
  EXPECT_THROW(PlanCursor::fromJson(json), InputError);
}

/// The batch layout's derived parts against the row buffers: cu_seqlens cut the flattened
/// cells exactly where the document id changes (or a row ends), max_seqlen is the longest
/// cut, one_document_per_row says whether any row holds two documents, and the targets are
/// the labelled cells in ascending order.
void checkLayout(const MicroBatch& mb) {
  const int64_t cells = mb.rows * mb.width;
  std::vector<int32_t> cuts = {0};
  bool one_per_row = true;
  for (int64_t c = 1; c <= cells; ++c) {
    const bool row_end = c % mb.width == 0;
    if (row_end || mb.documents[c] != mb.documents[c - 1]) cuts.push_back(static_cast<int32_t>(c));
    if (!row_end && mb.documents[c] != mb.documents[c - 1] && mb.documents[c] > 1) {
      one_per_row = false;
    }
  }
  EXPECT_EQ(mb.cu_seqlens, cuts);
  int64_t longest = 0;
  for (size_t i = 1; i < cuts.size(); ++i)
    longest = std::max<int64_t>(longest, cuts[i] - cuts[i - 1]);
  EXPECT_EQ(mb.max_seqlen, longest);
  EXPECT_EQ(mb.one_document_per_row, one_per_row);
  std::vector<int64_t> positions;
  std::vector<int32_t> targets;
  for (int64_t c = 0; c < cells; ++c) {
    if (mb.labels[c] == kIgnoreLabel) continue;
    positions.push_back(c);
    targets.push_back(mb.labels[c]);
  }
  EXPECT_EQ(mb.target_positions, positions);
  EXPECT_EQ(mb.targets, targets);
}

/// Checks one rank's assembled micro-batches against its plan and the source data.
void checkAssembly(const Index& index, const RankStepPlan& plan, const std::vector<MicroBatch>& mbs,
                   int64_t micro_batch, bool packing) {
  ASSERT_EQ(mbs.size(), plan.micro_batches.size());
  std::map<int64_t, int64_t> placed;  // sample -> tokens found
  int64_t tokens = 0;
  int64_t loss = 0;
  for (size_t k = 0; k < mbs.size(); ++k) {
    const MicroBatch& mb = mbs[k];
    EXPECT_GE(mb.rows, 1);
    EXPECT_LE(mb.rows, micro_batch);
    if (k + 1 < mbs.size()) EXPECT_EQ(mb.rows, micro_batch);
    EXPECT_LE(mb.width, kSeqLen);
    const auto cells = static_cast<size_t>(mb.rows * mb.width);
    ASSERT_EQ(mb.tokens.size(), cells);
    ASSERT_EQ(mb.positions.size(), cells);
    ASSERT_EQ(mb.documents.size(), cells);
    ASSERT_EQ(mb.loss_mask.size(), cells);
    ASSERT_EQ(mb.labels.size(), cells);
    int64_t mb_loss = 0;
    for (int64_t r = 0; r < mb.rows; ++r) {
      int32_t segment = 0;
      int64_t documents = 0;
      bool padding = false;
      for (int64_t p = 0; p < mb.width; ++p) {
        const auto c = static_cast<size_t>(r * mb.width + p);
        if (mb.documents[c] == 0) {
          padding = true;
          EXPECT_EQ(mb.labels[c], kIgnoreLabel);
          EXPECT_EQ(mb.loss_mask[c], 0);
          continue;
        }
        ASSERT_FALSE(padding) << "a document after padding";
        const int64_t sample = mb.tokens[c] / 1000;
        const int64_t offset = mb.tokens[c] % 1000;
        if (mb.documents[c] != segment) {  // a new document starts at position 0
          EXPECT_EQ(mb.documents[c], segment + 1);
          segment = mb.documents[c];
          ++documents;
          EXPECT_EQ(mb.positions[c], 0);
          EXPECT_EQ(offset, 0);
          EXPECT_EQ(mb.loss_mask[c], 0) << "a document's first token is never a target";
        }
        EXPECT_EQ(mb.positions[c], offset);
        EXPECT_EQ(mb.tokens[c], tokenAt(sample, offset));
        EXPECT_EQ(mb.loss_mask[c], offset > 0 ? maskAt(sample, offset) : 0);
        // labels[p] predicts the next token of the same document when it is a target.
        const bool next_same = p + 1 < mb.width && mb.documents[c + 1] == segment;
        if (next_same && mb.loss_mask[c + 1]) {
          EXPECT_EQ(mb.labels[c], mb.tokens[c + 1]);
        } else {
          EXPECT_EQ(mb.labels[c], kIgnoreLabel);
        }
        placed[sample] += 1;
        ++tokens;
      }
      if (!packing) EXPECT_LE(documents, 1);
    }
    for (size_t c = 0; c < cells; ++c) {
      mb_loss += mb.labels[c] != kIgnoreLabel;
      EXPECT_EQ(mb.labels[c] != kIgnoreLabel, c + 1 < cells && mb.loss_mask[c + 1] == 1 &&
                                                  mb.documents[c + 1] == mb.documents[c] &&
                                                  mb.documents[c] != 0);
    }
    EXPECT_EQ(mb.num_loss_tokens, mb_loss);
    EXPECT_EQ(mb.num_loss_tokens, plan.micro_batches[k].loss_tokens);
    checkLayout(mb);
    loss += mb_loss;
  }
  // Tokens conserved: every planned sample exactly once, truncated to seq_len.
  EXPECT_EQ(placed.size(), plan.sample_ids.size());
  for (int64_t id : plan.sample_ids) {
    EXPECT_EQ(placed[id], std::min(index.lengths[id], kSeqLen)) << "sample " << id;
  }
  EXPECT_EQ(tokens, plan.local_tokens);
  EXPECT_EQ(loss, plan.local_loss_tokens);
}

TEST(Planner, PackingKeepsDocumentsApartAndConservesTokens) {
  const Index index = makeIndex(200, 3);
  for (bool packing : {true, false}) {
    for (int64_t pad_multiple : {int64_t{0}, int64_t{8}}) {
      auto config = byTokens(900);
      config.packing = packing;
      config.pad_multiple = pad_multiple;
      const BatchPlanner planner = makePlanner(index, config);
      EXPECT_GT(planner.numTruncated(), 0);
      PlanCursor cursor = planner.begin();
      for (int64_t s = 0; s < 12; ++s) {
        const GlobalBatch batch = planner.globalBatch(cursor);
        const std::vector<double> weights = {1, 2, 5};
        int64_t global_loss = 0;
        for (int r = 0; r < 3; ++r) {
          const int64_t micro_batch = 1 + r;
          const auto plan = planner.planRank(batch, weights, r, micro_batch);
          for (const auto& mb : plan.micro_batches) {
            for (const auto& row : mb.rows) EXPECT_LE(row.length, kSeqLen);
            if (pad_multiple == 0) EXPECT_EQ(mb.width, kSeqLen);
            if (pad_multiple > 0) EXPECT_EQ(mb.width % pad_multiple, 0);
          }
          // The reader returns samples in any order it was asked for.
          auto ids = plan.sample_ids;
          std::reverse(ids.begin(), ids.end());
          const auto mbs = planner.assemble(plan, makeData(index, ids), /*pad_id=*/7);
          checkAssembly(index, plan, mbs, micro_batch, packing);
          for (const auto& mb : mbs) global_loss += mb.num_loss_tokens;
        }
        // What the ranks' models count together is the divisor every rank knows.
        EXPECT_EQ(global_loss, batch.loss_tokens);
        cursor = planner.next(cursor);
      }
    }
  }
}

TEST(Planner, PackingFillsRows) {
  // Lengths 40, 24, 30, 34, 10 with seq_len 64 pack first-fit-decreasing into 2 full rows
  // and one of 10: {40, 24}, {34, 30}, {10}.
  std::vector<int64_t> lengths = {40, 24, 30, 34, 10};
  std::vector<int64_t> loss = {1, 1, 1, 1, 1};
  PlannerConfig config = bySize(5);
  config.shuffle = false;
  const BatchPlanner planner(lengths, loss, config);
  const auto plan = planner.planRank(planner.globalBatch(planner.begin()), {1}, 0, 2);
  ASSERT_EQ(plan.micro_batches.size(), 2u);
  ASSERT_EQ(plan.micro_batches[0].rows.size(), 2u);
  EXPECT_EQ(plan.micro_batches[0].rows[0].length, 64);
  EXPECT_EQ(plan.micro_batches[0].rows[1].length, 64);
  EXPECT_EQ(plan.micro_batches[1].rows[0].length, 10);
  EXPECT_EQ(plan.micro_batches[0].tokens, 128);
}

TEST(Planner, RankWithoutSamplesHasEmptyPlan) {
  const Index index = makeIndex(60);
  const BatchPlanner planner = makePlanner(index, bySize(2));
  const auto batch = planner.globalBatch(planner.begin());
  const auto plan = planner.planRank(batch, {1, 0, 1, 1, 1}, 1, 4);
  EXPECT_TRUE(plan.sample_ids.empty());
  EXPECT_TRUE(plan.micro_batches.empty());
  EXPECT_EQ(plan.local_loss_tokens, 0);
  EXPECT_EQ(plan.global_loss_tokens, batch.loss_tokens);
  EXPECT_TRUE(planner.assemble(plan, SampleBatch{{}, {0}, {}, {}}, 0).empty());
}

TEST(Planner, BadSettingsRefused) {
  const Index index = makeIndex(50);
  auto both = byTokens();
  both.global_batch_size = 4;
  EXPECT_THROW(makePlanner(index, both), InputError);
  auto none = byTokens();
  none.global_batch_tokens = 0;
  EXPECT_THROW(makePlanner(index, none), InputError);
  auto no_len = byTokens();
  no_len.seq_len = 0;
  EXPECT_THROW(makePlanner(index, no_len), InputError);
  auto too_big = bySize(1000);
  too_big.drop_last = true;
  EXPECT_THROW(makePlanner(index, too_big), InputError);
  EXPECT_THROW(BatchPlanner({0, 0}, {0, 0}, bySize(1)), InputError);

  const BatchPlanner planner = makePlanner(index, byTokens());
  const auto batch = planner.globalBatch(planner.begin());
  EXPECT_THROW(planner.splitAcrossRanks(batch, {}), InputError);
  EXPECT_THROW(planner.splitAcrossRanks(batch, {0, 0}), InputError);
  EXPECT_THROW(planner.splitAcrossRanks(batch, {1, -1}), InputError);
  EXPECT_THROW(planner.splitAcrossRanks(batch, {1, NAN}), InputError);
  EXPECT_THROW(planner.planRank(batch, {1, 1}, 2, 1), InputError);
  EXPECT_THROW(planner.planRank(batch, {1, 1}, 0, 0), InputError);
}

TEST(Planner, AssemblyRefusesDataThatDoesNotMatchTheIndex) {
  const Index index = makeIndex(60);
  const BatchPlanner planner = makePlanner(index, bySize(8));
  const auto plan = planner.planRank(planner.globalBatch(planner.begin()), {1}, 0, 8);
  auto partial = plan.sample_ids;
  partial.pop_back();
  EXPECT_THROW(planner.assemble(plan, makeData(index, partial), 0), Error);
  SampleBatch wrong = makeData(index, plan.sample_ids);
  std::fill(wrong.loss_mask.begin(), wrong.loss_mask.end(), 0);
  EXPECT_THROW(planner.assemble(plan, wrong, 0), Error);
}

TEST(Planner, EndToEndFromTokenFile) {
  const Index index = makeIndex(90, 4);
  testing::TempDir dir;
  const auto path = dir.path() / "train.h5";
  {
    Hdf5DatasetInfo info;
    info.vocab_size = 1 << 20;
    Hdf5DatasetWriter writer(path, info);
    const auto all = makeData(index, [] {
      std::vector<int64_t> ids(90);
      std::iota(ids.begin(), ids.end(), 0);
      return ids;
    }());
    for (int64_t j = 0; j < all.size(); ++j) {
      writer.append(all.tokensOf(j), all.lossMaskOf(j), all.length(j));
    }
    writer.finish();
  }
  const Hdf5Dataset dataset(path);
  const auto config = byTokens(500);
  const BatchPlanner planner = BatchPlanner::fromDataset(dataset, config);
  EXPECT_EQ(planner.identity(), makePlanner(index, config).identity());
  Prefetcher prefetcher(dataset);
  const std::vector<double> weights = {3, 1};
  PlanCursor cursor = planner.begin();
  for (int64_t s = 0; s < 8; ++s) {
    const GlobalBatch batch = planner.globalBatch(cursor);
    int64_t loss = 0;
    for (int r = 0; r < 2; ++r) {
      const auto plan = planner.planRank(batch, weights, r, 2);
      prefetcher.submit(plan.sample_ids);
      const auto mbs = planner.assemble(plan, prefetcher.next(), 0);
      checkAssembly(index, plan, mbs, 2, true);
      for (const auto& mb : mbs) loss += mb.num_loss_tokens;
    }
    EXPECT_EQ(loss, batch.loss_tokens);
    cursor = planner.next(cursor);
  }
}

}  // namespace
}  // namespace loom

#pragma once
// Evaluation: the summed next-token loss of a model over samples of a token file.
//
// Samples are packed into rows of seq_len exactly as training packs them (the planner's
// first-fit decreasing, documents never attending across each other, longer samples cut to
// their first seq_len tokens), so the numbers mean what the training loss means. The result
// is a SUM and a COUNT, never a mean: a distributed evaluation has every rank evaluate its
// share (evalShare) and all-reduce loss_sum and loss_tokens, then divides once.
//
//   single process:  evaluateDataset(model, dataset, seq_len, packing, options)
//   rank r of N:     planner = BatchPlanner::fromDataset(dataset, evalPlannerConfig(...));
//                    ids = evalShare(planner, weights, r);
//                    local = evaluateSamples(model, dataset, planner, ids, options);
//                    all-reduce local.loss_sum, local.loss_tokens (and the counts), divide.

#include <cstdint>
#include <functional>
#include <vector>

#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/planner.hpp"
#include "loom/model/decoder.hpp"

namespace loom {

/// Sums over the evaluated samples. Add the results of several ranks or parts with +=.
struct EvalResult {
  double loss_sum =
      0.0;  ///< sum of token cross-entropies (each micro-batch's fp32 sum, added in fp64)
  int64_t loss_tokens = 0;  ///< target tokens in loss_sum
  int64_t samples = 0;      ///< samples evaluated
  int64_t tokens = 0;       ///< input tokens (after truncation to seq_len)
  int64_t truncated = 0;    ///< samples longer than seq_len, cut to their first seq_len tokens

  /// loss_sum / loss_tokens (NaN when there are none).
  double loss() const;
  /// exp(loss()).
  double perplexity() const;
  EvalResult& operator+=(const EvalResult& other);
};

/// Progress of an evaluation, reported after each micro-batch.
struct EvalProgress {
  int64_t samples_done = 0;
  int64_t samples_total = 0;
  int64_t tokens_done = 0;
  double loss_sum = 0.0;  ///< so far
  int64_t loss_tokens = 0;
};

struct EvalOptions {
  int64_t micro_batch = 4;  ///< rows of seq_len per forward pass
  /// Samples read from the file at a time (and packed together); 0: enough for about 16
  /// micro-batches. The next group is read on a background thread while one is evaluated.
  int64_t samples_per_read = 0;
  int32_t pad_id = 0;                ///< fills row padding (never attended to, never a target)
  int64_t loss_chunk_tokens = 2048;  ///< tokens per chunk of the chunked loss
  std::function<void(const EvalProgress&)> progress;  ///< optional
};

/// The planner settings of an evaluation: no shuffle, every sample once, rows of seq_len.
PlannerConfig evalPlannerConfig(int64_t seq_len, bool packing);

/// The samples rank `rank` evaluates: the planner's epoch-0 order (ascending ids, empty
/// samples skipped) cut into consecutive runs whose tokens follow `weights`, the rule
/// training uses for a batch. The shares of all ranks cover every sample once. The same on
/// every rank, from the index alone.
std::vector<int64_t> evalShare(const BatchPlanner& planner, const std::vector<double>& weights,
                               int rank);

/// Evaluates exactly `sample_ids` of `dataset` (in groups of options.samples_per_read,
/// packed as the planner packs a rank's share) with no gradient, in eval mode (LoRA dropout
/// off); the model's training mode is restored afterwards. `planner` must be built over
/// `dataset`'s index; its seq_len and packing apply. An empty list gives an all-zero result.
EvalResult evaluateSamples(CausalLm& model, const Hdf5Dataset& dataset, const BatchPlanner& planner,
                           const std::vector<int64_t>& sample_ids, const EvalOptions& options = {});

/// Single process: every sample of `dataset`.
EvalResult evaluateDataset(CausalLm& model, const Hdf5Dataset& dataset, int64_t seq_len,
                           bool packing, const EvalOptions& options = {});

}  // namespace loom

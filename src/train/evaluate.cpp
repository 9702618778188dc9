#include "loom/train/evaluate.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/core/error.hpp"
#include "loom/model/loss.hpp"
#include "loom/train/batch_tensors.hpp"

namespace loom {

namespace detail {
namespace {

/// Puts the model in eval mode for its lifetime and restores the previous mode.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(CausalLm& model) : model_(model), was_training_(model.is_training()) {
    model_.eval();
  }
  ~EvalModeGuard() { model_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  CausalLm& model_;
  bool was_training_;
};

}  // namespace
}  // namespace detail

double EvalResult::loss() const {
  if (loss_tokens == 0) return std::numeric_limits<double>::quiet_NaN();
  return loss_sum / static_cast<double>(loss_tokens);
}

double EvalResult::perplexity() const { return std::exp(loss()); }

EvalResult& EvalResult::operator+=(const EvalResult& other) {
  loss_sum += other.loss_sum;
  loss_tokens += other.loss_tokens;
  samples += other.samples;
  tokens += other.tokens;
  truncated += other.truncated;
  return *this;
}

PlannerConfig evalPlannerConfig(int64_t seq_len, bool packing) {
  PlannerConfig c;
  c.seq_len = seq_len;
  // One "step" holding the whole set: evalShare splits it across ranks by weight.
  c.global_batch_tokens = std::numeric_limits<int64_t>::max();
  c.shuffle = false;
  c.drop_last = false;
  c.packing = packing;
  return c;
}

std::vector<int64_t> evalShare(const BatchPlanner& planner, const std::vector<double>& weights,
                               int rank) {
  LOOM_CHECK(rank >= 0 && static_cast<size_t>(rank) < weights.size(),
             "evalShare: rank " << rank << " of " << weights.size() << " weights");
  const GlobalBatch all = planner.globalBatch(planner.begin());
  return planner.splitAcrossRanks(all, weights)[static_cast<size_t>(rank)];
}

EvalResult evaluateSamples(CausalLm& model, const Hdf5Dataset& dataset, const BatchPlanner& planner,
                           const std::vector<int64_t>& sample_ids, const EvalOptions& options) {
  LOOM_CHECK(planner.numSamples() == dataset.numSamples(),
             "evaluateSamples: the planner indexes "
                 << planner.numSamples() << " samples, the dataset " << dataset.numSamples());
  LOOM_CHECK(options.micro_batch > 0, "evaluateSamples: micro_batch must be > 0");
  const int64_t seq_len = planner.config().seq_len;

  // Empty samples carry nothing and the planner never packs them.
  std::vector<int64_t> ids;
  ids.reserve(sample_ids.size());
  for (int64_t id : sample_ids) {
    LOOM_CHECK(id >= 0 && id < dataset.numSamples(),
               "evaluateSamples: sample " << id << " of " << dataset.numSamples());
    if (dataset.sampleLength(id) > 0) ids.push_back(id);
  }
  EvalResult result;
  if (ids.empty()) return result;

  const int64_t per_read = options.samples_per_read > 0
                               ? options.samples_per_read
                               : std::max<int64_t>(16 * options.micro_batch, 64);
  std::vector<std::vector<int64_t>> groups;
  for (size_t first = 0; first < ids.size(); first += static_cast<size_t>(per_read)) {
    const size_t last = std::min(ids.size(), first + static_cast<size_t>(per_read));
    groups.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(first),
                        ids.begin() + static_cast<std::ptrdiff_t>(last));
  }

  at::NoGradGuard no_grad;
  detail::EvalModeGuard eval_mode(model);
  const c10::Device device = model.options().device;
  Prefetcher prefetcher(dataset);
  prefetcher.submit(groups[0]);
  EvalProgress progress;
  progress.samples_total = static_cast<int64_t>(ids.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    if (g + 1 < groups.size()) prefetcher.submit(groups[g + 1]);  // read while this one runs
    const SampleBatch data = prefetcher.next();

    // The group as one planner batch for a single rank: packed like a rank's share.
    GlobalBatch batch;
    batch.sample_ids = groups[g];
    for (int64_t id : batch.sample_ids) {
      const int64_t length = dataset.sampleLength(id);
      batch.tokens += std::min(length, seq_len);
      if (length > seq_len) ++result.truncated;
    }
    const RankStepPlan plan = planner.planRank(batch, {1.0}, 0, options.micro_batch);
    for (const PlannedMicroBatch& planned : plan.micro_batches) {
      const MicroBatch mb = planner.assemble(planned, data, options.pad_id);
      const BatchTensors t = toTensors(mb, device);     // [B, T] each
      const at::Tensor hidden = model.hidden(t.input);  // [B, T, H]
      const LossSum loss =
          causalLmLoss(hidden, model.lmHeadWeight(), t.targets, options.loss_chunk_tokens);
      result.loss_sum += loss.sum.item<double>();
      result.loss_tokens += loss.count;
      result.tokens += mb.num_tokens;

      int64_t samples = 0;
      for (const PlannedRow& row : planned.rows)
        samples += static_cast<int64_t>(row.segments.size());
      result.samples += samples;
      if (options.progress) {
        progress.samples_done = result.samples;
        progress.tokens_done = result.tokens;
        progress.loss_sum = result.loss_sum;
        progress.loss_tokens = result.loss_tokens;
        options.progress(progress);
      }
    }
  }
  return result;
}

EvalResult evaluateDataset(CausalLm& model, const Hdf5Dataset& dataset, int64_t seq_len,
                           bool packing, const EvalOptions& options) {
  const BatchPlanner planner =
      BatchPlanner::fromDataset(dataset, evalPlannerConfig(seq_len, packing));
  return evaluateSamples(model, dataset, planner, evalShare(planner, {1.0}, 0), options);
}

}  // namespace loom

#pragma once
// The batch planner: which samples each step trains on, which rank takes which of them,
// and how a rank packs its share into rows and micro-batches.
//
// Planning uses only the index (each sample's length and loss-token count), so every rank
// computes the same plan without communication. Assembly (assemble()) then turns a rank's
// plan plus the token data it read into row-major buffers for the model.
//
// What the trainer may rely on:
//
// * Epoch order. Each epoch visits every non-empty sample once, in an order drawn from
//   (seed, epoch) by a Fisher-Yates shuffle over a splitmix64 stream implemented here, so
//   it is the same with every compiler and standard library (shuffle = false: ascending).
//   Empty samples (length 0) are never planned.
//
// * Global batches. Step k of an epoch takes the next samples of that order:
//   - by size (global_batch_size = B): exactly B samples;
//   - by tokens (global_batch_tokens = T): samples until adding the next would exceed T
//     tokens (always at least one sample).
//   Lengths count after truncation to seq_len. The last batch of an epoch, which ends
//   because the epoch ran out rather than because it was full, is kept (a smaller step:
//   the loss is divided by its own loss-token count) unless drop_last is set.
//   A global batch depends only on the index, seed, seq_len and batch settings: never on
//   the number of ranks, their weights or their micro-batch sizes (split-invariance).
//
// * Split across ranks. The batch's samples, in batch order, are cut into consecutive
//   runs, one per rank: sample j goes to the rank whose slice of [0, batch tokens), sized
//   in proportion to the weights, contains the midpoint of sample j's token span. So every
//   sample goes to exactly one rank and each rank's tokens differ from its weight's share
//   by at most one sample's length. A rank of weight 0, or one left without a midpoint in
//   its slice, gets no samples that step and must still join the step's collectives.
//   Weights may change from one step to the next (re-weighting); the global batch does not.
//   All ranks must pass the same weights (the same doubles) for a step.
//
// * Rows. A sample longer than seq_len is truncated to its first seq_len tokens (counted in
//   numTruncated(); `trainer prepare` normally guarantees none). With packing, a rank's
//   samples are packed first-fit-decreasing into rows of at most seq_len tokens; a document
//   never spans two rows. Without packing, one sample per row, in batch order. Rows are
//   cut into micro-batches of the rank's micro_batch rows (the last may have fewer).
//
// * Loss convention (matches the HDF5 file, see hdf5_dataset.hpp): a token is a target
//   when its loss_mask is 1 and it is not the first token of its document; a target is
//   predicted from the position before it. In an assembled row, labels[p] is the token at
//   p + 1 when that token is a target of the same document, else kIgnoreLabel; so a model
//   computing sum-reduced cross-entropy(logits[p], labels[p]) over a micro-batch counts
//   exactly MicroBatch::num_loss_tokens targets, and over a step the ranks together count
//   GlobalBatch::loss_tokens, which every rank knows from the index alone: the divisor.
//
// * Cursor. A PlanCursor names a step (epoch, step within the epoch, where its batch
//   starts in the epoch order, steps since the start) plus the identity of the plan it
//   belongs to. Planning from a cursor saved in a checkpoint reproduces the uninterrupted
//   plan exactly, with any number of ranks or weights; a cursor from a different dataset,
//   seq_len, seed or batch setting is refused with an InputError naming what changed.

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "loom/data/hdf5_dataset.hpp"

namespace loom {

/// Label for positions that are not targets (PyTorch's cross-entropy ignore_index default).
inline constexpr int32_t kIgnoreLabel = -100;

/// Settings of a plan. Exactly one of global_batch_size and global_batch_tokens is > 0.
struct PlannerConfig {
  int64_t seq_len = 0;              ///< row length; longer samples are truncated to it
  int64_t global_batch_size = 0;    ///< samples per step
  int64_t global_batch_tokens = 0;  ///< token budget per step
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = false;  ///< drop each epoch's last batch when it is not full
  bool packing = true;     ///< several documents per row
  /// 0: every micro-batch is seq_len wide (static shapes). k > 0: a micro-batch is as wide
  /// as its longest row rounded up to a multiple of k (at most seq_len): less padding.
  int64_t pad_multiple = 0;
};

/// What a cursor must match to be resumed by a planner: the plan's identity.
struct PlanIdentity {
  int64_t num_samples = 0;
  uint64_t index_hash = 0;  ///< of every sample's length and loss-token count
  int64_t seq_len = 0;
  int64_t global_batch_size = 0;
  int64_t global_batch_tokens = 0;
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = false;

  bool operator==(const PlanIdentity& other) const;
  bool operator!=(const PlanIdentity& other) const { return !(*this == other); }
};

/// A step of a plan, small and serialisable: save it in checkpoints, resume from it.
struct PlanCursor {
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
  int64_t position = 0;     ///< where this step's batch starts in the epoch's order
  int64_t global_step = 0;  ///< steps before this one since the start of training
  PlanIdentity plan;

  nlohmann::json toJson() const;
  /// Throws InputError naming the missing or mistyped key.
  static PlanCursor fromJson(const nlohmann::json& json);
  std::string toString() const;  ///< compact JSON
  static PlanCursor fromString(const std::string& text);

  bool operator==(const PlanCursor& other) const;
  bool operator!=(const PlanCursor& other) const { return !(*this == other); }
};

/// The samples of one step, the same on every rank.
struct GlobalBatch {
  PlanCursor cursor;
  std::vector<int64_t> sample_ids;  ///< [k] in epoch order
  int64_t tokens = 0;               ///< after truncation to seq_len
  int64_t loss_tokens = 0;          ///< the step's loss divisor
};

/// A document's place in a planned row: the first `length` tokens of `sample`.
struct RowSegment {
  int64_t sample = 0;
  int64_t length = 0;       ///< min(sample length, seq_len)
  int64_t loss_tokens = 0;  ///< targets within those tokens
};

struct PlannedRow {
  std::vector<RowSegment> segments;  ///< documents in row order
  int64_t length = 0;                ///< tokens used (<= seq_len); the rest is padding
};

struct PlannedMicroBatch {
  std::vector<PlannedRow> rows;  ///< 1 .. micro_batch rows
  int64_t width = 0;             ///< row length after padding
  int64_t tokens = 0;
  int64_t loss_tokens = 0;
};

/// One rank's part of a step, from the index alone.
struct RankStepPlan {
  int rank = 0;
  PlanCursor cursor;
  std::vector<int64_t> sample_ids;  ///< this rank's samples in batch order: what to read
  std::vector<PlannedMicroBatch> micro_batches;
  int64_t local_tokens = 0;
  int64_t local_loss_tokens = 0;
  int64_t global_tokens = 0;
  int64_t global_loss_tokens = 0;  ///< same on every rank: divide summed losses by it
};

/// A micro-batch ready for the model: the batch layout. Buffers are row-major [rows, width];
/// "cell" c is row c / width, column c % width.
struct MicroBatch {
  int64_t rows = 0;
  int64_t width = 0;
  std::vector<int32_t> tokens;     // [rows, width] input ids; pad id in padding
  std::vector<int32_t> positions;  // [rows, width] 0, 1, ... restarting at each document
  std::vector<int32_t> documents;  // [rows, width] 1, 2, ... per document in a row; 0 = pad
  std::vector<uint8_t> loss_mask;  // [rows, width] 1 where the token is a target
  std::vector<int32_t> labels;     // [rows, width] next target token or kIgnoreLabel
  /// [sequences + 1] cumulative lengths over the flattened cells, as varlen attention
  /// kernels take them: each document is a sequence, and so is each row's padding tail, so
  /// the sequences cover every cell and none crosses a row.
  std::vector<int32_t> cu_seqlens;
  int64_t max_seqlen = 0;  ///< the longest of those sequences
  /// Every row holds at most one document (then padding): plain causal attention is exact.
  bool one_document_per_row = true;
  /// [num_loss_tokens] the cells that predict a target (labels != kIgnoreLabel), ascending,
  /// and the token ids they predict: what the loss gathers, known on the host.
  std::vector<int64_t> target_positions;
  std::vector<int32_t> targets;
  int64_t num_tokens = 0;       ///< non-padding tokens
  int64_t num_loss_tokens = 0;  ///< == count of labels != kIgnoreLabel == sum(loss_mask)
};

/// Plans steps over a dataset's index. Const methods are safe to call from several threads.
class BatchPlanner {
 public:
  /// `lengths[i]`: sample i's tokens. `loss_tokens[i]`: its targets within its first
  /// seq_len tokens (Hdf5Dataset::lossTokensWithin(seq_len) gives them). Throws InputError
  /// for bad settings or when the data cannot fill one step.
  BatchPlanner(std::vector<int64_t> lengths, std::vector<int64_t> loss_tokens,
               PlannerConfig config);
  /// Reads the index of `dataset` (and the masks of samples longer than seq_len).
  static BatchPlanner fromDataset(const Hdf5Dataset& dataset, PlannerConfig config);

  const PlannerConfig& config() const { return config_; }
  const PlanIdentity& identity() const { return identity_; }
  int64_t numSamples() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t numEmpty() const { return num_empty_; }          ///< never planned
  int64_t numTruncated() const { return num_truncated_; }  ///< longer than seq_len

  /// Steps in `epoch` (the same for every epoch when batching by size; by tokens it
  /// follows that epoch's order).
  int64_t stepsInEpoch(int64_t epoch) const;
  /// Steps in epochs [0, epochs).
  int64_t stepsForEpochs(int64_t epochs) const;
  /// The epoch's order of sample ids (non-empty samples only).
  std::vector<int64_t> epochOrder(int64_t epoch) const;

  /// The first step.
  PlanCursor begin() const;
  /// The step after `cursor`, crossing into the next epoch after its last step.
  PlanCursor next(const PlanCursor& cursor) const;
  /// Throws InputError when `cursor` does not belong to this plan (saved by a run with
  /// another dataset or batch settings) or points nowhere in it.
  void checkCursor(const PlanCursor& cursor) const;

  /// The step's samples and counts (checks the cursor).
  GlobalBatch globalBatch(const PlanCursor& cursor) const;
  /// The batch's samples per rank: result[r] in batch order; weights.size() ranks.
  std::vector<std::vector<int64_t>> splitAcrossRanks(const GlobalBatch& batch,
                                                     const std::vector<double>& weights) const;
  /// Rank `rank`'s share of `batch` (weights of all ranks), packed and cut into
  /// micro-batches of `micro_batch` rows.
  RankStepPlan planRank(const GlobalBatch& batch, const std::vector<double>& weights, int rank,
                        int64_t micro_batch) const;

  /// Builds one planned micro-batch from read data (`data` holds at least its samples,
  /// e.g. Hdf5Dataset::readSamples(plan.sample_ids)). `pad_id` fills padding (any id: the
  /// padding is never attended to by a document and never a target).
  MicroBatch assemble(const PlannedMicroBatch& planned, const SampleBatch& data,
                      int32_t pad_id) const;
  /// All micro-batches of a rank's step.
  std::vector<MicroBatch> assemble(const RankStepPlan& plan, const SampleBatch& data,
                                   int32_t pad_id) const;

 private:
  struct EpochLayout {
    std::vector<int64_t> order;   // [usable samples] sample ids
    std::vector<int64_t> starts;  // [steps + 1] batch k is order[starts[k] : starts[k+1]]
  };
  std::shared_ptr<const EpochLayout> layout(int64_t epoch) const;
  EpochLayout buildLayout(int64_t epoch) const;
  int64_t effectiveLength(int64_t sample) const;

  PlannerConfig config_;
  std::vector<int64_t> lengths_;      // [n]
  std::vector<int64_t> loss_tokens_;  // [n] within seq_len
  std::vector<int64_t> usable_;       // ids of non-empty samples, ascending
  int64_t num_empty_ = 0;
  int64_t num_truncated_ = 0;
  PlanIdentity identity_;

  // The last few epochs' layouts: building one is O(n), and the trainer asks for the
  // current epoch (and the next, when prefetching across a boundary) every step.
  // Behind a pointer so the planner stays movable.
  struct LayoutCache {
    std::mutex mutex;
    std::map<int64_t, std::shared_ptr<const EpochLayout>> epochs;
  };
  std::unique_ptr<LayoutCache> cache_ = std::make_unique<LayoutCache>();
};

}  // namespace loom

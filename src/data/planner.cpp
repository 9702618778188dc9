#include "loom/data/planner.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "loom/core/error.hpp"
#include "loom/core/hex.hpp"
#include "loom/core/splitmix.hpp"

namespace loom {
namespace detail {
namespace {

/// Order-sensitive hash of a sequence of 64-bit values.
class Hasher {
 public:
  void add(uint64_t value) { state_ = splitMix64(state_ ^ value) + 0x632BE59BD9B4E019ULL; }
  uint64_t value() const { return state_; }

 private:
  uint64_t state_ = 0xCBF29CE484222325ULL;
};

const nlohmann::json& requireKey(const nlohmann::json& json, const char* key) {
  LOOM_INPUT_CHECK(json.is_object() && json.contains(key),
                   "planner cursor: missing key '" << key << "' in " << json.dump());
  return json.at(key);
}

int64_t requireInt(const nlohmann::json& json, const char* key) {
  const auto& value = requireKey(json, key);
  LOOM_INPUT_CHECK(value.is_number_integer(), "planner cursor: key '"
                                                  << key << "' should be an integer, got "
                                                  << value.dump());
  return value.get<int64_t>();
}

uint64_t requireUnsigned(const nlohmann::json& json, const char* key) {
  const auto& value = requireKey(json, key);
  LOOM_INPUT_CHECK(
      value.is_number_unsigned() || (value.is_number_integer() && value >= 0),
      "planner cursor: key '" << key << "' should be a non-negative integer, got " << value.dump());
  return value.get<uint64_t>();
}

bool requireBool(const nlohmann::json& json, const char* key) {
  const auto& value = requireKey(json, key);
  LOOM_INPUT_CHECK(value.is_boolean(), "planner cursor: key '" << key
                                                               << "' should be true/false, got "
                                                               << value.dump());
  return value.get<bool>();
}

uint64_t requireHex(const nlohmann::json& json, const char* key) {
  const auto& value = requireKey(json, key);
  LOOM_INPUT_CHECK(
      value.is_string() && value.get<std::string>().size() == 16 &&
          value.get<std::string>().find_first_not_of("0123456789abcdef") == std::string::npos,
      "planner cursor: key '" << key << "' should be 16 hex digits, got " << value.dump());
  return std::stoull(value.get<std::string>(), nullptr, 16);
}

}  // namespace
}  // namespace detail

// ======================================================================== cursor

bool PlanIdentity::operator==(const PlanIdentity& o) const {
  return num_samples == o.num_samples && index_hash == o.index_hash && seq_len == o.seq_len &&
         global_batch_size == o.global_batch_size && global_batch_tokens == o.global_batch_tokens &&
         seed == o.seed && shuffle == o.shuffle && drop_last == o.drop_last;
}

bool PlanCursor::operator==(const PlanCursor& o) const {
  return epoch == o.epoch && step_in_epoch == o.step_in_epoch && position == o.position &&
         global_step == o.global_step && plan == o.plan;
}

nlohmann::json PlanCursor::toJson() const {
  return {{"epoch", epoch},
          {"step_in_epoch", step_in_epoch},
          {"position", position},
          {"global_step", global_step},
          {"plan",
           {{"num_samples", plan.num_samples},
            {"index_hash", hex64(plan.index_hash)},
            {"seq_len", plan.seq_len},
            {"global_batch_size", plan.global_batch_size},
            {"global_batch_tokens", plan.global_batch_tokens},
            {"seed", plan.seed},
            {"shuffle", plan.shuffle},
            {"drop_last", plan.drop_last}}}};
}

PlanCursor PlanCursor::fromJson(const nlohmann::json& json) {
  PlanCursor c;
  c.epoch = detail::requireInt(json, "epoch");
  c.step_in_epoch = detail::requireInt(json, "step_in_epoch");
  c.position = detail::requireInt(json, "position");
  c.global_step = detail::requireInt(json, "global_step");
  const auto& plan = detail::requireKey(json, "plan");
  c.plan.num_samples = detail::requireInt(plan, "num_samples");
  c.plan.index_hash = detail::requireHex(plan, "index_hash");
  c.plan.seq_len = detail::requireInt(plan, "seq_len");
  c.plan.global_batch_size = detail::requireInt(plan, "global_batch_size");
  c.plan.global_batch_tokens = detail::requireInt(plan, "global_batch_tokens");
  c.plan.seed = detail::requireUnsigned(plan, "seed");
  c.plan.shuffle = detail::requireBool(plan, "shuffle");
  c.plan.drop_last = detail::requireBool(plan, "drop_last");
  LOOM_INPUT_CHECK(c.epoch >= 0 && c.step_in_epoch >= 0 && c.position >= 0 && c.global_step >= 0,
                   "planner cursor: negative epoch, step or position in " << json.dump());
  return c;
}

std::string PlanCursor::toString() const { return toJson().dump(); }

PlanCursor PlanCursor::fromString(const std::string& text) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (a huge number)
    throw InputError("planner cursor: not valid JSON (" + std::string(e.what()) + ")");
  }
  return fromJson(json);
}

// ======================================================================== planner

BatchPlanner::BatchPlanner(std::vector<int64_t> lengths, std::vector<int64_t> loss_tokens,
                           PlannerConfig config)
    : config_(config), lengths_(std::move(lengths)), loss_tokens_(std::move(loss_tokens)) {
  LOOM_INPUT_CHECK(config_.seq_len > 0 && config_.seq_len <= std::numeric_limits<int32_t>::max(),
                   "seq_len must be in [1, 2^31), got " << config_.seq_len);
  LOOM_INPUT_CHECK((config_.global_batch_size > 0) != (config_.global_batch_tokens > 0),
                   "set exactly one of global_batch_size ("
                       << config_.global_batch_size << ") and global_batch_tokens ("
                       << config_.global_batch_tokens << ") to a positive number");
  LOOM_INPUT_CHECK(config_.global_batch_size >= 0 && config_.global_batch_tokens >= 0,
                   "global_batch_size and global_batch_tokens must not be negative");
  LOOM_INPUT_CHECK(config_.pad_multiple >= 0,
                   "pad_multiple must be >= 0, got " << config_.pad_multiple);
  LOOM_CHECK(lengths_.size() == loss_tokens_.size(),
             lengths_.size() << " lengths but " << loss_tokens_.size() << " loss counts");

  detail::Hasher hasher;
  for (size_t i = 0; i < lengths_.size(); ++i) {
    LOOM_CHECK(lengths_[i] >= 0, "sample " << i << " has negative length " << lengths_[i]);
    const int64_t effective = std::min(lengths_[i], config_.seq_len);
    LOOM_CHECK(loss_tokens_[i] >= 0 && loss_tokens_[i] <= std::max<int64_t>(effective - 1, 0),
               "sample " << i << ": " << loss_tokens_[i] << " loss tokens within " << effective
                         << " tokens (at most " << std::max<int64_t>(effective - 1, 0)
                         << "; pass the counts within seq_len, see lossTokensWithin)");
    if (lengths_[i] == 0) {
      ++num_empty_;
    } else {
      usable_.push_back(static_cast<int64_t>(i));
    }
    if (lengths_[i] > config_.seq_len) ++num_truncated_;
    hasher.add(static_cast<uint64_t>(lengths_[i]));
    hasher.add(static_cast<uint64_t>(loss_tokens_[i]));
  }
  identity_.num_samples = numSamples();
  identity_.index_hash = hasher.value();
  identity_.seq_len = config_.seq_len;
  identity_.global_batch_size = config_.global_batch_size;
  identity_.global_batch_tokens = config_.global_batch_tokens;
  identity_.seed = config_.seed;
  identity_.shuffle = config_.shuffle;
  identity_.drop_last = config_.drop_last;

  LOOM_INPUT_CHECK(!usable_.empty(),
                   "the dataset has no non-empty samples (" << numSamples() << " samples)");
  if (stepsInEpoch(0) == 0) {
    int64_t total = 0;
    for (int64_t i : usable_) total += effectiveLength(i);
    LOOM_INPUT_CHECK(false, "the dataset ("
                                << usable_.size() << " non-empty samples, " << total
                                << " tokens) cannot fill one global batch of "
                                << (config_.global_batch_size > 0
                                        ? std::to_string(config_.global_batch_size) + " samples"
                                        : std::to_string(config_.global_batch_tokens) + " tokens")
                                << " and drop_last is set");
  }
}

BatchPlanner BatchPlanner::fromDataset(const Hdf5Dataset& dataset, PlannerConfig config) {
  LOOM_INPUT_CHECK(config.seq_len > 0, "seq_len must be > 0, got " << config.seq_len);
  try {
    return BatchPlanner(dataset.lengths(), dataset.lossTokensWithin(config.seq_len), config);
  } catch (const InputError& e) {
    // The planner sees lengths only; its complaints are about this file.
    throw InputError("data file " + dataset.path().string() + ": " + e.what());
  }
}

int64_t BatchPlanner::effectiveLength(int64_t sample) const {
  return std::min(lengths_[sample], config_.seq_len);
}

BatchPlanner::EpochLayout BatchPlanner::buildLayout(int64_t epoch) const {
  EpochLayout layout;
  layout.order = usable_;
  if (config_.shuffle) {
    // One independent stream per (seed, epoch): epochs can be built in any order.
    SplitMix64 rng(splitMix64(config_.seed) ^
                   splitMix64(static_cast<uint64_t>(epoch) + 0x5851F42D4C957F2DULL));
    for (size_t i = layout.order.size() - 1; i > 0; --i) {
      const auto j = static_cast<size_t>(rng.below(i + 1));
      std::swap(layout.order[i], layout.order[j]);
    }
  }
  const auto n = static_cast<int64_t>(layout.order.size());
  layout.starts.push_back(0);
  int64_t position = 0;
  while (position < n) {
    int64_t end = position;
    bool full = false;
    if (config_.global_batch_size > 0) {
      end = std::min(n, position + config_.global_batch_size);
      full = end - position == config_.global_batch_size;
    } else {
      int64_t tokens = 0;
      while (end < n) {
        const int64_t next = effectiveLength(layout.order[end]);
        if (end > position && tokens + next > config_.global_batch_tokens) {
          full = true;
          break;
        }
        tokens += next;
        ++end;
      }
      full = full || tokens >= config_.global_batch_tokens;
    }
    if (!full && config_.drop_last) break;
    layout.starts.push_back(end);
    position = end;
  }
  return layout;
}

std::shared_ptr<const BatchPlanner::EpochLayout> BatchPlanner::layout(int64_t epoch) const {
  LOOM_CHECK(epoch >= 0, "negative epoch " << epoch);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  auto& epochs = cache_->epochs;
  auto found = epochs.find(epoch);
  if (found != epochs.end()) return found->second;
  auto built = std::make_shared<const EpochLayout>(buildLayout(epoch));
  epochs.emplace(epoch, built);
  if (epochs.size() > 3) {
    // Keep the epochs nearest the one asked for (the trainer walks forward).
    epochs.erase(epochs.begin()->first == epoch ? std::prev(epochs.end()) : epochs.begin());
  }
  return built;
}

int64_t BatchPlanner::stepsInEpoch(int64_t epoch) const {
  return static_cast<int64_t>(layout(epoch)->starts.size()) - 1;
}

int64_t BatchPlanner::stepsForEpochs(int64_t epochs) const {
  LOOM_CHECK(epochs >= 0, "negative epoch count " << epochs);
  if (config_.global_batch_size > 0) {  // the same every epoch: no need to shuffle
    return epochs * stepsInEpoch(0);
  }
  int64_t steps = 0;
  for (int64_t e = 0; e < epochs; ++e)
    steps += static_cast<int64_t>(buildLayout(e).starts.size()) - 1;
  return steps;
}

std::vector<int64_t> BatchPlanner::epochOrder(int64_t epoch) const { return layout(epoch)->order; }

PlanCursor BatchPlanner::begin() const {
  PlanCursor cursor;
  cursor.plan = identity_;
  return cursor;
}

void BatchPlanner::checkCursor(const PlanCursor& cursor) const {
  const PlanIdentity& saved = cursor.plan;
  const PlanIdentity& ours = identity_;
  if (saved != ours) {
    std::ostringstream changed;
    auto note = [&](const char* what, const auto& then, const auto& now) {
      if (!(then == now)) changed << " " << what << " " << then << " -> " << now << ";";
    };
    note("num_samples", saved.num_samples, ours.num_samples);
    note("index (sample lengths / loss tokens)", hex64(saved.index_hash), hex64(ours.index_hash));
    note("seq_len", saved.seq_len, ours.seq_len);
    note("global_batch_size", saved.global_batch_size, ours.global_batch_size);
    note("global_batch_tokens", saved.global_batch_tokens, ours.global_batch_tokens);
    note("seed", saved.seed, ours.seed);
    note("shuffle", saved.shuffle, ours.shuffle);
    note("drop_last", saved.drop_last, ours.drop_last);
    LOOM_INPUT_CHECK(false,
                     "planner cursor belongs to another plan; the data or batch settings "
                     "changed since it was saved:"
                         << changed.str() << " resume with the original dataset and settings");
  }
  LOOM_INPUT_CHECK(cursor.epoch >= 0 && cursor.step_in_epoch >= 0,
                   "planner cursor: negative epoch or step in " << cursor.toString());
  const auto epoch = layout(cursor.epoch);
  const auto steps = static_cast<int64_t>(epoch->starts.size()) - 1;
  LOOM_INPUT_CHECK(cursor.step_in_epoch < steps,
                   "planner cursor: step " << cursor.step_in_epoch << " of epoch " << cursor.epoch
                                           << ", which has only " << steps << " steps");
  LOOM_INPUT_CHECK(cursor.position == epoch->starts[cursor.step_in_epoch],
                   "planner cursor: step " << cursor.step_in_epoch << " of epoch " << cursor.epoch
                                           << " starts at position "
                                           << epoch->starts[cursor.step_in_epoch]
                                           << " but the cursor says " << cursor.position);
}

PlanCursor BatchPlanner::next(const PlanCursor& cursor) const {
  checkCursor(cursor);
  const auto epoch = layout(cursor.epoch);
  PlanCursor following = cursor;
  following.global_step = cursor.global_step + 1;
  if (cursor.step_in_epoch + 1 < static_cast<int64_t>(epoch->starts.size()) - 1) {
    following.step_in_epoch = cursor.step_in_epoch + 1;
    following.position = epoch->starts[following.step_in_epoch];
  } else {
    following.epoch = cursor.epoch + 1;
    following.step_in_epoch = 0;
    following.position = 0;
  }
  return following;
}

GlobalBatch BatchPlanner::globalBatch(const PlanCursor& cursor) const {
  checkCursor(cursor);
  const auto epoch = layout(cursor.epoch);
  GlobalBatch batch;
  batch.cursor = cursor;
  const int64_t begin = epoch->starts[cursor.step_in_epoch];
  const int64_t end = epoch->starts[cursor.step_in_epoch + 1];
  batch.sample_ids.assign(epoch->order.begin() + begin, epoch->order.begin() + end);
  for (int64_t id : batch.sample_ids) {
    batch.tokens += effectiveLength(id);
    batch.loss_tokens += loss_tokens_[id];
  }
  return batch;
}

std::vector<std::vector<int64_t>> BatchPlanner::splitAcrossRanks(
    const GlobalBatch& batch, const std::vector<double>& weights) const {
  LOOM_INPUT_CHECK(!weights.empty(), "rank weights: none given");
  double total = 0;
  for (size_t r = 0; r < weights.size(); ++r) {
    LOOM_INPUT_CHECK(std::isfinite(weights[r]) && weights[r] >= 0,
                     "rank weights: rank " << r << " has weight " << weights[r]
                                           << ", expected a finite number >= 0");
    total += weights[r];
  }
  LOOM_INPUT_CHECK(total > 0, "rank weights: all zero; at least one rank must take samples");

  // Rank r's slice of the batch's tokens is [bound[r], bound[r + 1]); bounds are doubled so
  // that a sample's doubled midpoint 2 * start + length stays an integer.
  const auto ranks = weights.size();
  std::vector<double> doubled_bound(ranks + 1);  // [ranks + 1]
  double prefix = 0;
  for (size_t r = 0; r < ranks; ++r) {
    doubled_bound[r] = 2.0 * static_cast<double>(batch.tokens) * (prefix / total);
    prefix += weights[r];
  }
  doubled_bound[ranks] = std::numeric_limits<double>::infinity();

  std::vector<std::vector<int64_t>> shares(ranks);
  size_t rank = 0;
  int64_t start = 0;
  for (int64_t id : batch.sample_ids) {
    const int64_t length = effectiveLength(id);
    const auto doubled_mid = static_cast<double>(2 * start + length);
    while (doubled_mid >= doubled_bound[rank + 1]) ++rank;
    shares[rank].push_back(id);
    start += length;
  }
  return shares;
}

RankStepPlan BatchPlanner::planRank(const GlobalBatch& batch, const std::vector<double>& weights,
                                    int rank, int64_t micro_batch) const {
  LOOM_INPUT_CHECK(rank >= 0 && static_cast<size_t>(rank) < weights.size(),
                   "rank " << rank << " has no weight (" << weights.size() << " weights given)");
  LOOM_INPUT_CHECK(micro_batch > 0,
                   "micro_batch of rank " << rank << " must be > 0, got " << micro_batch);
  RankStepPlan plan;
  plan.rank = rank;
  plan.cursor = batch.cursor;
  plan.global_tokens = batch.tokens;
  plan.global_loss_tokens = batch.loss_tokens;
  plan.sample_ids = std::move(splitAcrossRanks(batch, weights)[static_cast<size_t>(rank)]);

  std::vector<RowSegment> segments;
  segments.reserve(plan.sample_ids.size());
  for (int64_t id : plan.sample_ids) {
    segments.push_back({id, effectiveLength(id), loss_tokens_[id]});
    plan.local_tokens += segments.back().length;
    plan.local_loss_tokens += segments.back().loss_tokens;
  }

  std::vector<PlannedRow> rows;
  if (config_.packing) {
    // First-fit decreasing: the longest documents claim rows first, shorter ones fill gaps.
    std::stable_sort(segments.begin(), segments.end(),
                     [](const RowSegment& a, const RowSegment& b) { return a.length > b.length; });
    for (const RowSegment& segment : segments) {
      auto row = std::find_if(rows.begin(), rows.end(), [&](const PlannedRow& r) {
        return r.length + segment.length <= config_.seq_len;
      });
      if (row == rows.end()) row = rows.insert(rows.end(), PlannedRow{});
      row->segments.push_back(segment);
      row->length += segment.length;
    }
  } else {
    for (const RowSegment& segment : segments) rows.push_back({{segment}, segment.length});
  }

  for (size_t first = 0; first < rows.size(); first += static_cast<size_t>(micro_batch)) {
    const size_t last = std::min(rows.size(), first + static_cast<size_t>(micro_batch));
    PlannedMicroBatch micro;
    micro.rows.assign(std::make_move_iterator(rows.begin() + first),
                      std::make_move_iterator(rows.begin() + last));
    int64_t longest = 0;
    for (const PlannedRow& row : micro.rows) {
      longest = std::max(longest, row.length);
      micro.tokens += row.length;
      for (const RowSegment& segment : row.segments) micro.loss_tokens += segment.loss_tokens;
    }
    micro.width = config_.seq_len;
    if (config_.pad_multiple > 0) {
      const int64_t rounded =
          (longest + config_.pad_multiple - 1) / config_.pad_multiple * config_.pad_multiple;
      micro.width = std::min(config_.seq_len, rounded);
    }
    plan.micro_batches.push_back(std::move(micro));
  }
  return plan;
}

namespace detail {
namespace {

using SampleLookup = std::unordered_map<int64_t, int64_t>;  // sample id -> entry in a batch

SampleLookup lookupOf(const SampleBatch& data) {
  SampleLookup lookup;
  lookup.reserve(data.sample_ids.size());
  for (int64_t j = 0; j < data.size(); ++j) lookup.emplace(data.sample_ids[j], j);
  return lookup;
}

MicroBatch assembleWith(const PlannedMicroBatch& planned, const SampleBatch& data,
                        const SampleLookup& lookup, const std::vector<int64_t>& lengths,
                        int32_t pad_id) {
  MicroBatch mb;
  mb.rows = static_cast<int64_t>(planned.rows.size());
  mb.width = planned.width;
  const auto cells = static_cast<size_t>(mb.rows * mb.width);
  mb.tokens.assign(cells, pad_id);
  mb.positions.assign(cells, 0);
  mb.documents.assign(cells, 0);
  mb.cu_seqlens.assign(1, 0);
  mb.loss_mask.assign(cells, 0);
  mb.labels.assign(cells, kIgnoreLabel);
  for (int64_t r = 0; r < mb.rows; ++r) {
    const PlannedRow& row = planned.rows[static_cast<size_t>(r)];
    LOOM_CHECK(row.length <= mb.width,
               "row of " << row.length << " tokens in a micro-batch " << mb.width << " wide");
    int64_t column = 0;
    int32_t segment_id = 0;
    for (const RowSegment& segment : row.segments) {
      ++segment_id;
      auto found = lookup.find(segment.sample);
      LOOM_CHECK(found != lookup.end(),
                 "sample " << segment.sample << " is planned but missing from the read data");
      const int64_t j = found->second;
      LOOM_CHECK(data.length(j) == lengths[static_cast<size_t>(segment.sample)],
                 "sample " << segment.sample << " has " << data.length(j)
                           << " tokens in the read data but "
                           << lengths[static_cast<size_t>(segment.sample)]
                           << " in the planner's index (data from another dataset?)");
      const int32_t* tokens = data.tokensOf(j);
      const uint8_t* mask = data.lossMaskOf(j);
      const int64_t base = r * mb.width + column;
      int64_t targets = 0;
      for (int64_t p = 0; p < segment.length; ++p) {
        const auto cell = static_cast<size_t>(base + p);
        mb.tokens[cell] = tokens[p];
        mb.positions[cell] = static_cast<int32_t>(p);
        mb.documents[cell] = segment_id;
        // The document's first token has no context inside the document: never a target.
        if (p > 0 && mask[p] != 0) {
          mb.loss_mask[cell] = 1;
          mb.labels[cell - 1] = tokens[p];
          ++targets;
        }
      }
      LOOM_CHECK(targets == segment.loss_tokens,
                 "sample " << segment.sample << ": the read loss mask marks " << targets
                           << " targets in its first " << segment.length
                           << " tokens, the planner's index " << segment.loss_tokens);
      mb.num_tokens += segment.length;
      mb.num_loss_tokens += targets;
      column += segment.length;
      mb.cu_seqlens.push_back(static_cast<int32_t>(r * mb.width + column));
      mb.max_seqlen = std::max(mb.max_seqlen, segment.length);
    }
    if (row.segments.size() > 1) mb.one_document_per_row = false;
    if (column < mb.width) {  // the padding tail: a sequence of its own
      mb.cu_seqlens.push_back(static_cast<int32_t>((r + 1) * mb.width));
      mb.max_seqlen = std::max(mb.max_seqlen, mb.width - column);
    }
  }
  // Ascending cell order: the order in which the loss sums its terms.
  mb.target_positions.reserve(static_cast<size_t>(mb.num_loss_tokens));
  mb.targets.reserve(static_cast<size_t>(mb.num_loss_tokens));
  for (size_t cell = 0; cell < cells; ++cell) {
    if (mb.labels[cell] == kIgnoreLabel) continue;
    mb.target_positions.push_back(static_cast<int64_t>(cell));
    mb.targets.push_back(mb.labels[cell]);
  }
  return mb;
}

}  // namespace
}  // namespace detail

MicroBatch BatchPlanner::assemble(const PlannedMicroBatch& planned, const SampleBatch& data,
                                  int32_t pad_id) const {
  return detail::assembleWith(planned, data, detail::lookupOf(data), lengths_, pad_id);
}

std::vector<MicroBatch> BatchPlanner::assemble(const RankStepPlan& plan, const SampleBatch& data,
                                               int32_t pad_id) const {
  const auto lookup = detail::lookupOf(data);
  std::vector<MicroBatch> out;
  out.reserve(plan.micro_batches.size());
  for (const PlannedMicroBatch& planned : plan.micro_batches) {
    out.push_back(detail::assembleWith(planned, data, lookup, lengths_, pad_id));
  }
  return out;
}

}  // namespace loom

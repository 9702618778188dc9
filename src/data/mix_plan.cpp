// See mix_plan.hpp.

#include "loom/data/mix_plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "loom/core/error.hpp"
#include "loom/core/splitmix.hpp"

namespace loom {

namespace {

constexpr uint64_t kValidationPurpose = 1;
constexpr uint64_t kMixPurpose = 2;

bool below(uint64_t key, double fraction) {
  return static_cast<double>(key >> 11) * 0x1.0p-53 < fraction;
}

}  // namespace

uint64_t recordKey(uint64_t seed, uint64_t purpose, uint64_t source, uint64_t index) {
  return splitMix64(splitMix64(splitMix64(seed ^ splitMix64(purpose)) ^ source) ^ index);
}

InputSpec parseInputSpec(const std::string& argument, const std::string& where) {
  InputSpec spec;
  const size_t colon = argument.rfind(':');
  std::error_code ec;
  if (colon == std::string::npos || std::filesystem::exists(argument, ec)) {
    spec.path = argument;
    return spec;
  }
  spec.path = argument.substr(0, colon);
  const std::string text = argument.substr(colon + 1);
  char* end = nullptr;
  const double w = text.empty() ? NAN : std::strtod(text.c_str(), &end);
  LOOM_INPUT_CHECK(!text.empty() && end == text.c_str() + text.size() && std::isfinite(w) && w > 0,
                   where << " " << argument << ": the weight '" << text
                         << "' is not a positive number (expected FILE or FILE:WEIGHT, e.g. "
                            "train.jsonl:0.7)");
  spec.weight = w;
  return spec;
}

MixPlan::MixPlan(std::vector<int64_t> counts, std::vector<double> weights, int64_t total,
                 uint64_t seed, double val_fraction)
    : seed_(seed), val_fraction_(val_fraction) {
  LOOM_CHECK(counts.size() == weights.size() && !counts.empty(), "MixPlan: one weight a source");
  const double weight_sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  sources_.resize(counts.size());
  std::vector<std::vector<uint64_t>> keys(counts.size());
  for (size_t s = 0; s < counts.size(); ++s) {
    Source& src = sources_[s];
    src.count = counts[s];
    src.weight = weights[s];
    for (int64_t r = 0; r < src.count; ++r) {
      if (inValidation(s, r)) continue;
      keys[s].push_back(recordKey(seed_, kMixPurpose, s, static_cast<uint64_t>(r)));
    }
    src.available = static_cast<int64_t>(keys[s].size());
  }
  if (total > 0) {
    total_ = total;
  } else {
    // The largest mix that repeats nothing: no source asked for more than it has.
    double n = INFINITY;
    for (const auto& src : sources_) {
      n = std::min(n, std::floor(static_cast<double>(src.available) * weight_sum / src.weight));
    }
    total_ = static_cast<int64_t>(n);
  }
  // Largest remainder: floors first, then one more to the largest fractional parts.
  std::vector<double> fraction(sources_.size());
  int64_t assigned = 0;
  for (size_t s = 0; s < sources_.size(); ++s) {
    const double quota = static_cast<double>(total_) * sources_[s].weight / weight_sum;
    sources_[s].selected = static_cast<int64_t>(std::floor(quota));
    fraction[s] = quota - std::floor(quota);
    assigned += sources_[s].selected;
  }
  std::vector<size_t> order(sources_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return fraction[a] > fraction[b]; });
  for (size_t k = 0; assigned < total_; k = (k + 1) % order.size(), ++assigned) {
    ++sources_[order[k]].selected;
  }
  for (size_t s = 0; s < sources_.size(); ++s) {
    Source& src = sources_[s];
    if (src.selected == 0) continue;
    LOOM_INPUT_CHECK(src.available > 0, "--input source " << s + 1
                                                          << ": no records left for the mix "
                                                             "(all went to validation)");
    src.full_passes = src.selected / src.available;
    src.extra = src.selected % src.available;
    if (src.extra > 0) {
      auto nth = keys[s].begin() + (src.extra - 1);
      std::nth_element(keys[s].begin(), nth, keys[s].end());
      src.extra_threshold = *nth;
    }
  }
}

bool MixPlan::inValidation(size_t source, int64_t index) const {
  return val_fraction_ > 0 &&
         below(recordKey(seed_, kValidationPurpose, source, static_cast<uint64_t>(index)),
               val_fraction_);
}

int64_t MixPlan::copies(size_t source, int64_t index) const {
  const Source& src = sources_[source];
  if (index < 0 || index >= src.count || inValidation(source, index)) return 0;
  int64_t n = src.full_passes;
  if (src.extra > 0 &&
      recordKey(seed_, kMixPurpose, source, static_cast<uint64_t>(index)) <= src.extra_threshold) {
    ++n;
  }
  return n;
}

}  // namespace loom

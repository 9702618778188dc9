#pragma once
// Mixing several inputs by weight in one `trainer prepare`:
//
//   trainer prepare --input general.jsonl:0.7 --input medical.jsonl:0.3 ...
//
// The training split holds the sources in the weights' proportions: source s gets
// n_s = N * w_s / sum(w) records (rounded by largest remainder, so the n_s add up to N).
// N is --mix-records, or by default the largest mix in which no record repeats
// (min over s of available_s * sum(w) / w_s). When n_s exceeds what a source has, its records
// repeat: every record n_s / available_s times, and n_s % available_s of them once more. Which
// records are taken is decided by a seeded hash of (seed, source, record number), so the mix
// is a pure function of the inputs and the seed, whatever the threads or chunking.
//
// With --val-fraction, each source first gives that fraction of its records (by another
// seeded hash) to the validation split, each once: an eval split per source, never repeated
// and never also in training. The mix is drawn from the rest.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace loom {

/// One --input argument: a file and, when given, its weight in the mix.
struct InputSpec {
  std::filesystem::path path;
  std::optional<double> weight;
};

/// "FILE" or "FILE:WEIGHT". A name that exists as a file is taken whole (so a file name
/// holding ':' still works); otherwise the part after the last ':' is the weight, which must
/// be a positive finite number: InputError naming `where` and the argument otherwise.
InputSpec parseInputSpec(const std::string& argument, const std::string& where);

/// A record's key for a seeded decision: uniform in [0, 2^64), a pure function of its
/// arguments. `purpose` separates decisions (validation, mix) so they are independent.
uint64_t recordKey(uint64_t seed, uint64_t purpose, uint64_t source, uint64_t index);

class MixPlan {
 public:
  /// `counts[s]` records in source s, `weights[s]` > 0 (one per source). `total` records in
  /// the training mix, 0 for the default (see above). `val_fraction` in [0, 1).
  MixPlan(std::vector<int64_t> counts, std::vector<double> weights, int64_t total, uint64_t seed,
          double val_fraction);

  /// True when record `index` of source `source` belongs to the validation split.
  bool inValidation(size_t source, int64_t index) const;
  /// How many times record `index` of `source` goes into the training split (0 for a record
  /// left out of the mix or sent to validation).
  int64_t copies(size_t source, int64_t index) const;

  size_t sources() const { return sources_.size(); }
  /// Records of `source` in the training mix (copies counted): n_s.
  int64_t selected(size_t source) const { return sources_[source].selected; }
  /// Records of `source` not in validation.
  int64_t available(size_t source) const { return sources_[source].available; }
  /// Records of the training mix: N.
  int64_t total() const { return total_; }

 private:
  struct Source {
    int64_t count = 0;
    double weight = 0;
    int64_t available = 0;
    int64_t selected = 0;
    int64_t full_passes = 0;       // every available record this many times
    int64_t extra = 0;             // ... and this many once more:
    uint64_t extra_threshold = 0;  // those whose mix key is at most this
  };
  uint64_t seed_;
  double val_fraction_;
  int64_t total_ = 0;
  std::vector<Source> sources_;
};

}  // namespace loom

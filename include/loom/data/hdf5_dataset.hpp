#pragma once
// Pre-tokenized training data in one HDF5 file per split: the writer that `trainer prepare`
// streams samples into, the reader every rank opens, and a prefetcher that reads the next
// step's samples on a background thread.
//
// File layout, format "loom-tokens" version 1 (h5py writes the same layout with plain
// `create_dataset` / `attrs`; tests/python/hdf5_dataset_tool.py is an example):
//
//   /tokens       int32 [num_tokens]       all samples' token ids back to back; chunked,
//                                          extendible; deflate optional (off: random reads
//                                          of a compressed chunk decompress all of it)
//   /loss_mask    uint8 [num_tokens]       1 where the token is a training target, else 0
//   /offsets      int64 [num_samples + 1]  sample i is tokens[offsets[i] : offsets[i+1]];
//                                          offsets[0] == 0, non-decreasing,
//                                          offsets[num_samples] == num_tokens
//   /loss_tokens  int32 [num_samples]      targets in sample i (see the convention below)
//
//   root attributes
//     format           string  "loom-tokens"                                   (required)
//     format_version   int64   1                                               (required)
//     vocab_size       int64   size of the tokenizer's vocabulary; every id < it (required)
//     tokenizer_hash   string  hash of tokenizer.json, to tell tokenizers apart
//     eos_id, pad_id   int64   special ids (-1 when the tokenizer has none)
//     source_files     string array  input files `prepare` read
//     template         string  prompt format / chat template used by `prepare`
//     created          string  creation time, ISO 8601 UTC
//     num_samples, num_tokens, num_loss_tokens  int64  checked against the arrays
//     any other        string  set by the writer's caller (setStringAttribute), e.g. the data
//                              report; read back with Hdf5Dataset::stringAttribute
//
// Loss-mask convention (the planner and the model's loss follow it): loss_mask[t] == 1 means
// token t is a target, predicted from tokens before it in the same sample. The first token
// of a sample has nothing before it and is never a target: the writer stores 0 there, and
// readers ignore a 1 there (a file from another tool may carry one). So
//   loss_tokens[i] == count of loss_mask[t] == 1 for t in (offsets[i], offsets[i+1]),
// the number of next-token predictions sample i contributes to the loss.
//
// HDF5 in Debian's serial build is not thread-safe: every HDF5 call in Loom goes through
// one process-wide mutex (hdf5Mutex()), so a dataset may be read from the prefetch thread
// while the main thread does other work.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace loom {

/// Names and version of the on-disk format.
inline constexpr const char* kTokensFormatName = "loom-tokens";
inline constexpr int64_t kTokensFormatVersion = 1;
inline constexpr const char* kTokensDataset = "tokens";
inline constexpr const char* kLossMaskDataset = "loss_mask";
inline constexpr const char* kOffsetsDataset = "offsets";
inline constexpr const char* kLossTokensDataset = "loss_tokens";
/// Root attributes the format itself writes (Hdf5DatasetInfo); setStringAttribute refuses them.
inline constexpr const char* kTokensReservedAttributes[] = {
    "format",  "format_version", "vocab_size",   "tokenizer_hash",
    "eos_id",  "pad_id",         "source_files", "template",
    "created", "num_samples",    "num_tokens",   "num_loss_tokens"};

/// The mutex every HDF5 call in the process holds (Debian's libhdf5 is built without
/// thread safety). Code outside this file that calls HDF5 directly must hold it too.
/// Recursive, so that handle destructors can take it inside a locked region.
std::recursive_mutex& hdf5Mutex();

/// Descriptive attributes of a token file (everything but the arrays).
struct Hdf5DatasetInfo {
  int64_t format_version = kTokensFormatVersion;
  int64_t vocab_size = 0;  ///< every token id is in [0, vocab_size)
  std::string tokenizer_hash;
  int64_t eos_id = -1;
  int64_t pad_id = -1;
  std::vector<std::string> source_files;
  std::string template_name;  ///< stored as attribute `template`
  std::string created;        ///< ISO 8601 UTC; the writer fills it when left empty
  int64_t num_samples = 0;
  int64_t num_tokens = 0;
  int64_t num_loss_tokens = 0;
};

/// One sample's data.
struct Sample {
  int64_t index = 0;
  std::vector<int32_t> tokens;     // [length]
  std::vector<uint8_t> loss_mask;  // [length]
};

/// Several samples' data back to back, in the order they were requested.
struct SampleBatch {
  std::vector<int64_t> sample_ids;  // [k]
  std::vector<int64_t> offsets;     // [k + 1], entry j is sample_ids[j]'s start in tokens
  std::vector<int32_t> tokens;      // [offsets.back()]
  std::vector<uint8_t> loss_mask;   // [offsets.back()]

  int64_t size() const { return static_cast<int64_t>(sample_ids.size()); }
  int64_t length(int64_t j) const { return offsets[j + 1] - offsets[j]; }
  const int32_t* tokensOf(int64_t j) const { return tokens.data() + offsets[j]; }
  const uint8_t* lossMaskOf(int64_t j) const { return loss_mask.data() + offsets[j]; }
};

/// Streams samples into a new token file. Output goes to a temporary name beside `path`
/// and is renamed onto `path` by finish(); destroyed without finish() (an exception, a
/// dropped run) the temporary file is removed, so `path` never holds a partial file.
/// Not thread-safe: one thread appends.
class Hdf5DatasetWriter {
 public:
  struct Options {
    int64_t chunk_elements = 1 << 16;  ///< chunk size of /tokens and /loss_mask
    int deflate_level = 0;             ///< 0 = no compression (fast random reads), 1-9 gzip
  };

  /// `info` gives vocab_size (required, > 0), tokenizer hash, ids, sources, template,
  /// created; its counts are ignored (the writer counts). An existing `path` is replaced
  /// only when finish() succeeds.
  Hdf5DatasetWriter(std::filesystem::path path, Hdf5DatasetInfo info);
  Hdf5DatasetWriter(std::filesystem::path path, Hdf5DatasetInfo info, Options options);
  ~Hdf5DatasetWriter();
  Hdf5DatasetWriter(const Hdf5DatasetWriter&) = delete;
  Hdf5DatasetWriter& operator=(const Hdf5DatasetWriter&) = delete;

  /// Appends one sample. Token ids must be in [0, vocab_size) and mask values 0 or 1
  /// (else loom::Error: the caller's tokenizer is inconsistent); mask[0] is stored as 0
  /// (the file's convention, see above). Empty samples are allowed (the planner skips them).
  void append(const int32_t* tokens, const uint8_t* loss_mask, int64_t length);
  void append(const std::vector<int32_t>& tokens, const std::vector<uint8_t>& loss_mask);

  /// Stores a UTF-8 string attribute on the file's root (written by finish()); call before
  /// finish(). Names used by the format itself are refused (loom::Error); setting a name
  /// again replaces its value. Values may be large (a JSON report of hundreds of KB).
  void setStringAttribute(const std::string& name, const std::string& value);

  /// Writes the index and attributes, syncs, and renames onto the final path. Call once.
  void finish();

  int64_t numSamples() const;
  int64_t numTokens() const;
  int64_t numLossTokens() const;
  const std::filesystem::path& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// A token file opened read-only. Opening validates the format name and version, the
/// arrays' types and lengths, the offsets, the per-sample loss counts and the vocabulary;
/// token ids and mask values are checked as samples are read. Every violation throws
/// loom::InputError naming the file and the sample or dataset.
/// The index (offsets, loss_tokens) is held in memory; token data is read on demand.
/// Reads are safe from any thread (they serialise on hdf5Mutex()).
class Hdf5Dataset {
 public:
  /// `model_vocab_size` > 0: the model's embedding rows. A dataset whose vocab_size exceeds
  /// it was tokenized for another model and is refused; a smaller one is accepted (models
  /// often pad their embedding matrix beyond the tokenizer's vocabulary). 0: no check.
  explicit Hdf5Dataset(const std::filesystem::path& path, int64_t model_vocab_size = 0);
  ~Hdf5Dataset();
  Hdf5Dataset(Hdf5Dataset&&) noexcept;
  Hdf5Dataset& operator=(Hdf5Dataset&&) noexcept;

  const std::filesystem::path& path() const;
  const Hdf5DatasetInfo& info() const;
  int64_t numSamples() const;
  int64_t numTokens() const;

  const std::vector<int64_t>& offsets() const;     // [num_samples + 1]
  const std::vector<int32_t>& lossTokens() const;  // [num_samples]
  int64_t sampleLength(int64_t i) const;
  /// Every sample's length: the planner's input.
  std::vector<int64_t> lengths() const;  // [num_samples]

  /// Loss tokens of each sample when cut to its first `max_length` tokens (the planner
  /// truncates samples longer than seq_len). Equals lossTokens() when no sample is longer;
  /// otherwise reads the masks of the longer samples only. Same answer on every rank.
  std::vector<int64_t> lossTokensWithin(int64_t max_length) const;  // [num_samples]

  /// A string attribute of the root, empty when absent (or not a single string). Read
  /// when the file is opened, so asking costs no HDF5 call.
  std::optional<std::string> stringAttribute(const std::string& name) const;

  /// Reads one sample (validated: ids < vocab_size, mask 0/1, count == loss_tokens[i]).
  Sample readSample(int64_t i) const;
  /// Reads several samples, touching only their token ranges (adjacent ranges are merged
  /// into one read). Duplicates are allowed; the result follows the requested order.
  SampleBatch readSamples(const std::vector<int64_t>& indices) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Reads index lists on a background thread, in the order they were submitted, so the next
/// step's samples load while the current one trains. The dataset must outlive it.
/// A read that fails (e.g. an id out of vocabulary) rethrows from the matching next()/get().
class Prefetcher {
 public:
  explicit Prefetcher(const Hdf5Dataset& dataset);
  /// Stops the thread after the read in progress; requests not yet read are abandoned.
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  /// Queues a read and returns its future (independent of next()'s queue).
  std::future<SampleBatch> request(std::vector<int64_t> indices);
  /// Queues a read whose result next() returns.
  void submit(std::vector<int64_t> indices);
  /// Blocks for the oldest submit()ted read not yet taken. Throws loom::Error when nothing
  /// is pending, or the read's own exception.
  SampleBatch next();
  /// submit()ted reads not yet taken by next().
  int64_t pending() const;

 private:
  struct Job {
    std::vector<int64_t> indices;
    std::promise<SampleBatch> promise;
  };
  void run();

  const Hdf5Dataset& dataset_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  std::deque<std::future<SampleBatch>> submitted_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace loom

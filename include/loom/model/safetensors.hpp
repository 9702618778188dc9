#pragma once
// safetensors checkpoints (https://github.com/huggingface/safetensors): a little-endian u64
// header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw bytes.
//
// Reading maps the file into memory: tensors alias the mapping (copy-on-write, so an
// accidental write never reaches the file) and keep it alive. Every header is validated
// before any tensor is handed out; a bad file is an InputError naming the file and tensor.
// Writing streams to a temporary name, fsyncs and renames (DESIGN invariant 4).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace loom {

/// One tensor's header entry. `begin`/`end` are byte offsets into the data section.
struct SafetensorsEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

/// Tensors in the order they are written.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// The safetensors spelling of a dtype ("BF16", "F32", ...); Error for unsupported ones.
std::string safetensorsDtypeName(at::ScalarType dtype);

/// One memory-mapped, validated safetensors file.
class SafetensorsFile {
 public:
  /// Maps and validates `path`; InputError on a missing, truncated or corrupt file.
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  /// Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  /// InputError naming the file when `name` is absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  /// A CPU tensor over the mapped bytes (copied only when misaligned for its dtype).
  at::Tensor tensor(const std::string& name) const;
  /// The `__metadata__` object (string to string), empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Mapping;
  std::filesystem::path path_;
  std::shared_ptr<Mapping> mapping_;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// A checkpoint made of one file or of shards listed in a `*.safetensors.index.json`.
class SafetensorsCheckpoint {
 public:
  /// `path` is a folder (holding `<prefix>.safetensors` or `<prefix>.safetensors.index.json`),
  /// a .safetensors file or an index file. InputError when nothing is found or a shard the
  /// index names is missing or disagrees with the index.
  static SafetensorsCheckpoint open(const std::filesystem::path& path,
                                    const std::string& prefix = "model");

  /// Every tensor name across the shards, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return owner_.count(name) != 0; }
  /// The file holding `name`; InputError naming the checkpoint when absent.
  const SafetensorsFile& fileOf(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const { return fileOf(name).entry(name); }
  at::Tensor tensor(const std::string& name) const { return fileOf(name).tensor(name); }
  /// What the checkpoint was opened from (for messages).
  const std::filesystem::path& source() const { return source_; }

 private:
  std::filesystem::path source_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> owner_;
};

/// Writes `tensors` (any device and layout; copied to contiguous CPU bytes) to `path`
/// atomically. `metadata` goes to `__metadata__`; {"format": "pt"} is added when absent.
void saveSafetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                     std::map<std::string, std::string> metadata = {});

/// Writes `<dir>/<prefix>.safetensors`, or, when the tensors exceed `max_shard_bytes`,
/// shards `<prefix>-00001-of-0000N.safetensors` plus `<prefix>.safetensors.index.json`
/// (written last, so a folder with an index has all its shards). Files of an earlier save
/// with the same prefix that this save does not rewrite are removed. Returns the files written.
std::vector<std::filesystem::path> saveSafetensorsSharded(const std::filesystem::path& dir,
                                                          const NamedTensors& tensors,
                                                          uint64_t max_shard_bytes,
                                                          const std::string& prefix = "model");

}  // namespace loom

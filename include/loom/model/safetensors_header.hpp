#pragma once
// The header of a safetensors file (https://github.com/huggingface/safetensors), parsed and
// validated without libtorch: a little-endian u64 length, then a JSON object
// {name: {dtype, shape, data_offsets}, "__metadata__": {key: value}}, then the data section.
// SafetensorsFile (safetensors.hpp) maps the file and builds tensors over what this returns;
// the fuzz target tests/fuzz/safetensors_header_fuzz.cpp feeds it arbitrary bytes.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace loom {

/// One tensor's header entry. `begin`/`end` are byte offsets into the data section.
struct SafetensorsHeaderEntry {
  std::string name;
  std::string dtype;  ///< "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  size_t element_size = 0;     ///< bytes per element of `dtype`
  std::vector<int64_t> shape;  ///< every dimension in [0, INT64_MAX]
  uint64_t begin = 0;
  uint64_t end = 0;  ///< end - begin == product(shape) * element_size
};

/// A validated header: the entries tile the data section in offset order, with no overlap
/// and no hole, as the reference reader requires.
struct SafetensorsHeader {
  uint64_t header_len = 0;  ///< bytes of JSON after the 8-byte length
  uint64_t data_size = 0;   ///< bytes of the data section (file size - 8 - header_len)
  std::map<std::string, SafetensorsHeaderEntry> entries;
  std::map<std::string, std::string> metadata;  ///< `__metadata__`, empty when absent

  /// Offset of the data section in the file.
  uint64_t dataOffset() const { return 8 + header_len; }
};

/// The dtypes a header may name, with their sizes in bytes.
struct SafetensorsDtype {
  const char* name;
  size_t size;
};
const std::vector<SafetensorsDtype>& safetensorsDtypes();

/// Parses and validates the header of a whole safetensors file held in `bytes` (the file's
/// contents, e.g. its memory mapping). Throws InputError naming `file` (and the tensor) when
/// the file is truncated, the header is not a JSON object of valid entries, or the entries
/// do not tile the data section exactly.
SafetensorsHeader parseSafetensorsHeader(std::string_view bytes, const std::string& file);

}  // namespace loom

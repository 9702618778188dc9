#include "loom/model/safetensors_header.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

#include "loom/core/error.hpp"

namespace loom {
namespace detail {
namespace {

// The reference implementation refuses headers above 100 MB; so do we, which also keeps a
// corrupt length from triggering a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

const SafetensorsDtype* findDtype(const std::string& name) {
  for (const auto& d : safetensorsDtypes()) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

}  // namespace
}  // namespace detail

const std::vector<SafetensorsDtype>& safetensorsDtypes() {
  static const std::vector<SafetensorsDtype> dtypes = {
      {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},  {"BOOL", 1},
  };
  return dtypes;
}

SafetensorsHeader parseSafetensorsHeader(std::string_view bytes, const std::string& file) {
  const uint64_t file_size = bytes.size();
  LOOM_INPUT_CHECK(file_size >= 8, "safetensors file " << file << ": truncated: " << file_size
                                                       << " bytes, expected at least 8");
  SafetensorsHeader out;
  std::memcpy(&out.header_len, bytes.data(), 8);  // little-endian on every supported host
  LOOM_INPUT_CHECK(out.header_len <= file_size - 8,
                   "safetensors file " << file << ": header length " << out.header_len
                                       << " runs past the end of the file (" << file_size
                                       << " bytes)");
  LOOM_INPUT_CHECK(out.header_len <= detail::kMaxHeaderBytes,
                   "safetensors file " << file << ": header length " << out.header_len
                                       << " exceeds the 100 MB limit");
  const char* header_begin = bytes.data() + 8;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + out.header_len);
  } catch (const nlohmann::json::exception& e) {
    LOOM_INPUT_CHECK(
        false, "safetensors file " << file << ": header is not valid JSON (" << e.what() << ")");
  }
  LOOM_INPUT_CHECK(header.is_object(),
                   "safetensors file " << file << ": header must be a JSON object");
  out.data_size = file_size - 8 - out.header_len;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      LOOM_INPUT_CHECK(v.is_object(),
                       "safetensors file " << file << ": __metadata__ must be an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        LOOM_INPUT_CHECK(m.value().is_string(), "safetensors file "
                                                    << file << ": __metadata__ value of '"
                                                    << m.key() << "' must be a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "safetensors file " + file + ", tensor '" + name + "'";
    LOOM_INPUT_CHECK(
        v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
        where << ": entry must be an object with dtype, shape and data_offsets");
    SafetensorsHeaderEntry e;
    e.name = name;
    const auto* dtype =
        v["dtype"].is_string() ? detail::findDtype(v["dtype"].get<std::string>()) : nullptr;
    LOOM_INPUT_CHECK(dtype, where << ": unsupported dtype " << v["dtype"].dump()
                                  << " (expected F32, F16, BF16, F64, I64, I32, I16, I8, U8 or "
                                     "BOOL)");
    e.dtype = dtype->name;
    e.element_size = dtype->size;
    LOOM_INPUT_CHECK(v["shape"].is_array(), where << ": shape must be an array");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      LOOM_INPUT_CHECK(
          d.is_number_unsigned(),
          where << ": shape entries must be non-negative integers, got " << v["shape"].dump());
      const uint64_t dim = d.get<uint64_t>();
      // Each dimension must fit a tensor size (int64) even when another one is 0.
      LOOM_INPUT_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                           (dim == 0 || numel <= std::numeric_limits<uint64_t>::max() / dim / 8),
                       where << ": shape " << v["shape"].dump() << " overflows");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    LOOM_INPUT_CHECK(
        off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
            off[1].is_number_unsigned(),
        where << ": data_offsets must be two non-negative integers, got " << off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    LOOM_INPUT_CHECK(e.begin <= e.end,
                     where << ": data_offsets " << off.dump() << " end before they begin");
    LOOM_INPUT_CHECK(e.end <= out.data_size, where << ": data_offsets " << off.dump()
                                                   << " run past the end of the file (data "
                                                      "section is "
                                                   << out.data_size << " bytes)");
    const uint64_t expected = numel * e.element_size;
    LOOM_INPUT_CHECK(e.end - e.begin == expected,
                     where << ": " << (e.end - e.begin) << " bytes in data_offsets, but dtype "
                           << e.dtype << " and shape " << v["shape"].dump() << " need "
                           << expected);
    out.entries.emplace(name, std::move(e));
  }

  // Like the reference reader: the tensors must tile the data section, no overlap, no hole.
  std::vector<const SafetensorsHeaderEntry*> by_offset;
  for (const auto& kv : out.entries) by_offset.push_back(&kv.second);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const auto* e : by_offset) {
    LOOM_INPUT_CHECK(e->begin >= cursor, "safetensors file " << file << ", tensor '" << e->name
                                                             << "': data_offsets [" << e->begin
                                                             << ", " << e->end
                                                             << "] overlap the previous tensor");
    LOOM_INPUT_CHECK(e->begin == cursor, "safetensors file "
                                             << file << ", tensor '" << e->name
                                             << "': data_offsets start at " << e->begin
                                             << ", leaving a hole after byte " << cursor);
    cursor = e->end;
  }
  LOOM_INPUT_CHECK(cursor == out.data_size,
                   "safetensors file " << file << ": tensors cover " << cursor
                                       << " bytes, but the data section has " << out.data_size);
  return out;
}

}  // namespace loom

#include "loom/model/bnb_4bit.hpp"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/core/strings.hpp"

namespace loom {
namespace detail {
namespace {

constexpr const char* kQuantStateSuffix = ".quant_state.bitsandbytes__";

/// Where messages point: the file holding `key` and the key.
std::string place(const SafetensorsCheckpoint& checkpoint, const std::string& key) {
  return "checkpoint file " + checkpoint.fileOf(key).path().string() + ", tensor '" + key + "'";
}

/// The quant_state key of `name`, or "" when there is none.
std::string quantStateKey(const SafetensorsCheckpoint& checkpoint, const std::string& name) {
  for (const char* type : {"nf4", "fp4"}) {
    const std::string key = name + kQuantStateSuffix + type;
    if (checkpoint.contains(key)) return key;
  }
  return "";
}

at::Tensor piece(const SafetensorsCheckpoint& checkpoint, const std::string& owner,
                 const std::string& key, at::ScalarType dtype, int64_t numel) {
  LOOM_INPUT_CHECK(checkpoint.contains(key), place(checkpoint, owner)
                                                 << ": bitsandbytes 4-bit weight without '" << key
                                                 << "'");
  const auto& e = checkpoint.entry(key);
  LOOM_INPUT_CHECK(e.dtype == dtype, place(checkpoint, key)
                                         << ": dtype " << safetensorsDtypeName(e.dtype) << " where "
                                         << safetensorsDtypeName(dtype) << " was expected");
  int64_t n = 1;
  for (int64_t d : e.shape) n *= d;
  LOOM_INPUT_CHECK(n == numel, place(checkpoint, key)
                                   << ": " << n << " values (shape " << at::IntArrayRef(e.shape)
                                   << ") where " << numel << " were expected");
  return checkpoint.tensor(key).reshape({numel});
}

}  // namespace
}  // namespace detail

bool isBnb4bitTensor(const SafetensorsCheckpoint& checkpoint, const std::string& name) {
  return !detail::quantStateKey(checkpoint, name).empty();
}

std::vector<std::string> bnb4bitKeys(const SafetensorsCheckpoint& checkpoint,
                                     const std::string& name) {
  std::vector<std::string> keys{name};
  for (const char* suffix : {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"}) {
    if (checkpoint.contains(name + suffix)) keys.push_back(name + suffix);
  }
  const std::string qs = detail::quantStateKey(checkpoint, name);
  if (!qs.empty()) keys.push_back(qs);
  return keys;
}

Nf4Weight readBnb4bit(const SafetensorsCheckpoint& checkpoint, const std::string& name,
                      const std::vector<int64_t>& expected_shape) {
  using detail::piece;
  using detail::place;
  const std::string qs_key = detail::quantStateKey(checkpoint, name);
  LOOM_INPUT_CHECK(!qs_key.empty(), place(checkpoint, name) << ": no quant_state");
  const std::string where = place(checkpoint, qs_key);
  LOOM_INPUT_CHECK(qs_key.size() > 3 && endsWith(qs_key, "nf4"),
                   where << ": quant type fp4 is not supported (expected nf4)");
  LOOM_INPUT_CHECK(checkpoint.entry(qs_key).dtype == at::kByte,
                   where << ": expected uint8 bytes of JSON");
  const at::Tensor bytes = checkpoint.tensor(qs_key).contiguous();
  const std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                         static_cast<size_t>(bytes.numel()));
  nlohmann::json qs;
  try {
    qs = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    LOOM_INPUT_CHECK(false, where << ": the quant_state is not valid JSON (" << e.what() << ")");
  }
  LOOM_INPUT_CHECK(qs.is_object(), where << ": the quant_state must be a JSON object");
  auto field = [&](const char* key) -> const nlohmann::json& {
    LOOM_INPUT_CHECK(qs.contains(key), where << ": quant_state has no '" << key << "'");
    return qs[key];
  };
  LOOM_INPUT_CHECK(field("quant_type") == "nf4", where << ": quant_state.quant_type "
                                                       << field("quant_type").dump()
                                                       << " is not supported (expected \"nf4\")");

  Nf4Weight w;
  const auto& blocksize = field("blocksize");
  LOOM_INPUT_CHECK(
      blocksize.is_number_integer() && isBitsandbytesBlocksize(blocksize.get<int64_t>()),
      where << ": quant_state.blocksize " << blocksize.dump()
            << " is not a bitsandbytes 4-bit block size (32, 64, 128, ..., 4096)");
  w.blocksize = blocksize.get<int64_t>();
  const auto& shape = field("shape");
  LOOM_INPUT_CHECK(shape.is_array() && shape.size() == expected_shape.size(),
                   where << ": quant_state.shape " << shape.dump() << " where "
                         << at::IntArrayRef(expected_shape) << " (from config.json) was expected");
  for (size_t i = 0; i < shape.size(); ++i) {
    LOOM_INPUT_CHECK(shape[i].is_number_integer() && shape[i].get<int64_t>() == expected_shape[i],
                     where << ": quant_state.shape " << shape.dump() << " where "
                           << at::IntArrayRef(expected_shape)
                           << " (from config.json) was expected");
  }
  w.shape = expected_shape;
  const auto& dtype = field("dtype");
  LOOM_INPUT_CHECK(dtype == "float32" || dtype == "bfloat16" || dtype == "float16",
                   where << ": quant_state.dtype " << dtype.dump()
                         << " (expected \"float32\", \"bfloat16\" or \"float16\")");
  // The dtype bitsandbytes would dequantize to; Loom dequantizes to each rank's compute dtype.

  const int64_t n = w.numel();
  const int64_t blocks = w.blocks();
  w.packed = piece(checkpoint, name, name, at::kByte, (n + 1) / 2);
  const at::Tensor levels = piece(checkpoint, name, name + ".quant_map", at::kFloat, 16);
  LOOM_INPUT_CHECK(at::equal(levels.to(at::kFloat), at::tensor(nf4Levels(), at::kFloat)),
                   place(checkpoint, name + ".quant_map") << ": not the NF4 levels");

  const bool nested = checkpoint.contains(name + ".nested_absmax") || qs.contains("nested_offset");
  if (!nested) {
    w.absmax = piece(checkpoint, name, name + ".absmax", at::kFloat, blocks);
    return w;
  }
  const auto& nested_blocksize = field("nested_blocksize");
  LOOM_INPUT_CHECK(nested_blocksize.is_number_integer() &&
                       isBitsandbytesBlocksize(nested_blocksize.get<int64_t>()) &&
                       nested_blocksize.get<int64_t>() >= 64,
                   where << ": quant_state.nested_blocksize " << nested_blocksize.dump()
                         << " is not a bitsandbytes block size (64, 128, ..., 4096)");
  w.nested_blocksize = nested_blocksize.get<int64_t>();
  LOOM_INPUT_CHECK(field("nested_dtype") == "float32", where << ": quant_state.nested_dtype "
                                                             << field("nested_dtype").dump()
                                                             << " (expected \"float32\")");
  const auto& offset = field("nested_offset");
  LOOM_INPUT_CHECK(offset.is_number(),
                   where << ": quant_state.nested_offset " << offset.dump() << " is not a number");
  w.offset = static_cast<float>(offset.get<double>());
  w.absmax = piece(checkpoint, name, name + ".absmax", at::kByte, blocks);
  const int64_t blocks2 = (blocks + w.nested_blocksize - 1) / w.nested_blocksize;
  w.nested_absmax = piece(checkpoint, name, name + ".nested_absmax", at::kFloat, blocks2);
  w.nested_code = piece(checkpoint, name, name + ".nested_quant_map", at::kFloat, 256);
  return w;
}

}  // namespace loom

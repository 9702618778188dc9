#include "loom/model/hf_config.hpp"

#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/text_encoding.hpp"

namespace loom {
namespace detail {
namespace {

using nlohmann::json;

int64_t requireInt(const json& j, const char* key, const std::string& source) {
  LOOM_INPUT_CHECK(j.contains(key), source << ": missing key '" << key << "'");
  LOOM_INPUT_CHECK(j[key].is_number_integer(),
                   source << ": '" << key << "' must be an integer, got " << j[key].dump());
  return j[key].get<int64_t>();
}

int64_t optionalInt(const json& j, const char* key, int64_t fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  return requireInt(j, key, source);
}

double optionalNumber(const json& j, const char* key, double fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  LOOM_INPUT_CHECK(j[key].is_number(),
                   source << ": '" << key << "' must be a number, got " << j[key].dump());
  return j[key].get<double>();
}

bool optionalBool(const json& j, const char* key, bool fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  LOOM_INPUT_CHECK(j[key].is_boolean(),
                   source << ": '" << key << "' must be true or false, got " << j[key].dump());
  return j[key].get<bool>();
}

}  // namespace
}  // namespace detail

void HfConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* key) {
    LOOM_INPUT_CHECK(v > 0, source << ": '" << key << "' must be positive, got " << v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  LOOM_INPUT_CHECK(num_attention_heads % num_key_value_heads == 0,
                   source << ": num_attention_heads (" << num_attention_heads
                          << ") must be a multiple of num_key_value_heads (" << num_key_value_heads
                          << ")");
  LOOM_INPUT_CHECK(head_dim % 2 == 0,
                   source << ": head_dim must be even for rotary embeddings, got " << head_dim);
  LOOM_INPUT_CHECK(rms_norm_eps > 0, source << ": 'rms_norm_eps' must be positive");
  LOOM_INPUT_CHECK(rope_theta > 0, source << ": 'rope_theta' must be positive");
}

namespace {

/// "bnb-nf4" for a bitsandbytes 4-bit NF4 quantization_config; InputError naming what else it is.
std::string quantizationOf(const nlohmann::json& q, const std::string& where) {
  LOOM_INPUT_CHECK(q.is_object(), where << " must be an object");
  const std::string method = q.contains("quant_method") && q["quant_method"].is_string()
                                 ? q["quant_method"].get<std::string>()
                                 : std::string("(none)");
  LOOM_INPUT_CHECK(method == "bitsandbytes",
                   where << ": quant_method '" << method
                         << "' is not supported; Loom reads bitsandbytes 4-bit NF4 checkpoints "
                            "(quant_method bitsandbytes, load_in_4bit) or 16/32-bit ones");
  const bool in_4bit =
      q.contains("load_in_4bit") && q["load_in_4bit"].is_boolean() && q["load_in_4bit"].get<bool>();
  LOOM_INPUT_CHECK(in_4bit, where << ": a bitsandbytes checkpoint that is not 4-bit "
                                     "(load_in_8bit?) is not supported; use the 16-bit original "
                                     "or a 4-bit NF4 checkpoint");
  const std::string type = q.contains("bnb_4bit_quant_type") && q["bnb_4bit_quant_type"].is_string()
                               ? q["bnb_4bit_quant_type"].get<std::string>()
                               : std::string("fp4");
  LOOM_INPUT_CHECK(type == "nf4", where << ": bnb_4bit_quant_type '" << type
                                        << "' is not supported (expected nf4)");
  if (q.contains("bnb_4bit_quant_storage") && q["bnb_4bit_quant_storage"].is_string()) {
    const std::string storage = q["bnb_4bit_quant_storage"].get<std::string>();
    LOOM_INPUT_CHECK(storage == "uint8", where << ": bnb_4bit_quant_storage '" << storage
                                               << "' is not supported (expected uint8)");
  }
  return "bnb-nf4";
}

}  // namespace

HfConfig parseHfConfig(const std::string& json_text, const std::string& source) {
  using detail::optionalBool;
  using detail::optionalInt;
  using detail::optionalNumber;
  using detail::requireInt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    LOOM_INPUT_CHECK(false, source << ": not valid JSON (" << printableText(e.what()) << ")");
  }
  LOOM_INPUT_CHECK(j.is_object(), source << ": expected a JSON object");
  LOOM_INPUT_CHECK(j.contains("model_type") && j["model_type"].is_string(),
                   source << ": missing string key 'model_type'");
  HfConfig c;
  c.model_type = j["model_type"].get<std::string>();
  LOOM_INPUT_CHECK(c.model_type == "qwen3" || c.model_type == "qwen2" || c.model_type == "llama",
                   source << ": unsupported model_type '" << c.model_type
                          << "' (supported: qwen3, qwen2, llama)");

  c.vocab_size = requireInt(j, "vocab_size", source);
  c.hidden_size = requireInt(j, "hidden_size", source);
  c.intermediate_size = requireInt(j, "intermediate_size", source);
  c.num_hidden_layers = requireInt(j, "num_hidden_layers", source);
  c.num_attention_heads = requireInt(j, "num_attention_heads", source);
  c.num_key_value_heads = optionalInt(j, "num_key_value_heads", c.num_attention_heads, source);
  LOOM_INPUT_CHECK(c.num_attention_heads > 0, source << ": 'num_attention_heads' must be positive");
  // transformers' Qwen3Config declares head_dim = 128 as its default; the others derive it.
  const int64_t derived_head_dim =
      c.model_type == "qwen3" ? 128 : c.hidden_size / c.num_attention_heads;
  c.head_dim = optionalInt(j, "head_dim", derived_head_dim, source);
  c.max_position_embeddings =
      optionalInt(j, "max_position_embeddings", c.model_type == "llama" ? 2048 : 32768, source);
  c.rms_norm_eps = optionalNumber(j, "rms_norm_eps", 1e-6, source);
  c.tie_word_embeddings = optionalBool(j, "tie_word_embeddings", false, source);
  c.qk_norm = c.model_type == "qwen3";
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;  // Qwen2Attention hard-codes bias on q/k/v and none on o
  } else {
    c.attention_bias = optionalBool(j, "attention_bias", false, source);
  }
  if (c.model_type == "llama") c.mlp_bias = optionalBool(j, "mlp_bias", false, source);

  if (j.contains("hidden_act") && !j["hidden_act"].is_null()) {
    LOOM_INPUT_CHECK(j["hidden_act"] == "silu", source << ": unsupported hidden_act "
                                                       << j["hidden_act"].dump()
                                                       << " (supported: \"silu\")");
  }
  if (c.model_type != "llama") {
    LOOM_INPUT_CHECK(!optionalBool(j, "use_sliding_window", false, source),
                     source << ": 'use_sliding_window: true' is not supported");
  }

  for (const char* key : {"dtype", "torch_dtype"}) {
    if (j.contains(key) && j[key].is_string()) {
      c.torch_dtype = j[key].get<std::string>();
      break;
    }
  }
  LOOM_INPUT_CHECK(
      c.torch_dtype == "float32" || c.torch_dtype == "bfloat16" || c.torch_dtype == "float16",
      source << ": unsupported dtype '" << c.torch_dtype
             << "' (expected float32, bfloat16 or float16)");

  // RoPE: transformers 5 writes `rope_parameters` {rope_type, rope_theta, ...}; older files
  // have top-level `rope_theta` and `rope_scaling` {rope_type|type, factor, ...}.
  c.rope_theta = optionalNumber(j, "rope_theta", 10000.0, source);
  nlohmann::json rope = nlohmann::json::object();
  std::string rope_key;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (j.contains(key) && !j[key].is_null()) {
      LOOM_INPUT_CHECK(j[key].is_object(), source << ": '" << key << "' must be an object");
      rope = j[key];
      rope_key = key;
      break;
    }
  }
  if (!rope.empty()) {
    const std::string where = source + ": '" + rope_key + "'";
    c.rope_theta = optionalNumber(rope, "rope_theta", c.rope_theta, where);
    std::string type = "default";
    for (const char* key : {"rope_type", "type"}) {
      if (rope.contains(key) && rope[key].is_string()) {
        type = rope[key].get<std::string>();
        break;
      }
    }
    LOOM_INPUT_CHECK(
        type == "default" || type == "llama3",
        where << ": unsupported rope_type '" << type << "' (supported: default, llama3)");
    c.rope_scaling.kind = type;
    if (type == "llama3") {
      auto need = [&](const char* key) {
        LOOM_INPUT_CHECK(rope.contains(key) && rope[key].is_number(),
                         where << ": rope_type llama3 needs a number '" << key << "'");
        return rope[key].get<double>();
      };
      c.rope_scaling.factor = need("factor");
      c.rope_scaling.low_freq_factor = need("low_freq_factor");
      c.rope_scaling.high_freq_factor = need("high_freq_factor");
      c.rope_scaling.original_max_position_embeddings =
          optionalInt(rope, "original_max_position_embeddings", c.max_position_embeddings, where);
      LOOM_INPUT_CHECK(c.rope_scaling.high_freq_factor != c.rope_scaling.low_freq_factor,
                       where << ": high_freq_factor must differ from low_freq_factor");
    }
  }
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    c.quantization = quantizationOf(j["quantization_config"], source + ": 'quantization_config'");
  }
  c.validate(source);
  return c;
}

HfConfig loadHfConfig(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  return parseHfConfig(readUtf8TextFile(file, "model config"), file.string());
}

}  // namespace loom

#pragma once
// The subset of a Hugging Face `config.json` that the decoder needs, for model_type
// qwen3, qwen2 and llama. Defaults follow transformers 5.x's config classes, so that a
// config.json missing a key means what it means to transformers.

#include <cstdint>
#include <filesystem>
#include <string>

namespace loom {

/// RoPE scaling. `kind` is "default" or "llama3" (Llama 3.1+ frequency smoothing).
struct RopeScaling {
  std::string kind = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

/// Architecture of a decoder checkpoint.
struct HfConfig {
  std::string model_type;  ///< "qwen3" | "qwen2" | "llama"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  ///< explicit, else hidden/heads (qwen3: 128, transformers' default)
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;          ///< bias on q/k/v/o (llama, qwen3)
  bool qkv_bias = false;                ///< bias on q/k/v only (always true for qwen2)
  bool mlp_bias = false;                ///< llama's mlp_bias
  bool qk_norm = false;                 ///< per-head RMSNorm on q and k before RoPE (qwen3)
  std::string torch_dtype = "float32";  ///< "float32" | "bfloat16" | "float16"
  /// How the checkpoint's linear weights are stored: "" (floating) or "bnb-nf4"
  /// (bitsandbytes 4-bit NF4, `quantization_config` in config.json; see bnb_4bit.hpp).
  std::string quantization;

  /// Checks internal consistency (heads divide, positive sizes); InputError naming `source`.
  void validate(const std::string& source) const;
};

/// Parses config.json text; `source` names the file in messages. InputError on an
/// unsupported model_type, a missing or ill-typed key, or an unsupported feature
/// (sliding-window attention, an activation other than silu, a RoPE type other than
/// default/llama3, a quantization other than bitsandbytes 4-bit NF4).
HfConfig parseHfConfig(const std::string& json_text, const std::string& source);

/// Reads `<dir>/config.json` (or the file itself when `path` is a file).
HfConfig loadHfConfig(const std::filesystem::path& path);

}  // namespace loom

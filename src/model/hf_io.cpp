#include "loom/model/hf_io.hpp"

#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/strings.hpp"
#include "loom/model/bnb_4bit.hpp"

namespace loom {
namespace detail {
namespace {

// Files of a model folder that travel with the weights (tokenizer, chat template, generation).
constexpr const char* kCompanionFiles[] = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
};

std::string humanCount(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000) {
    std::snprintf(buf, sizeof(buf), "%.3f B", n / 1e9);
  } else if (n >= 1'000'000) {
    std::snprintf(buf, sizeof(buf), "%.3f M", n / 1e6);
  } else if (n >= 1'000) {
    std::snprintf(buf, sizeof(buf), "%.3f K", n / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(n));
  }
  return buf;
}

std::string humanBytes(uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", n / double(1ull << 30));
  return buf;
}

}  // namespace
}  // namespace detail

void refuseQuantizedWeights(const SafetensorsCheckpoint& checkpoint) {
  // GPTQ and AWQ store a linear layer as qweight/qzeros/scales (int32-packed 4-bit) instead
  // of weight: name the method rather than report each weight as missing.
  for (const auto& name : checkpoint.names()) {
    const auto dot = name.rfind('.');
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    LOOM_INPUT_CHECK(leaf != "qweight" && leaf != "qzeros" && leaf != "g_idx",
                     "checkpoint " << checkpoint.source().string() << ": tensor '" << name
                                   << "' is a GPTQ/AWQ-quantized weight, which Loom does not "
                                      "read; use the 16-bit original model (or a bitsandbytes "
                                      "4-bit NF4 checkpoint for qlora)");
  }
}

namespace detail {
namespace {

/// InputError naming the checkpoint when `name` (of shape `shape`) is absent.
void requirePresent(const SafetensorsCheckpoint& checkpoint, const std::string& name,
                    const std::vector<int64_t>& shape) {
  LOOM_INPUT_CHECK(checkpoint.contains(name),
                   "checkpoint " << checkpoint.source().string() << ": missing tensor '" << name
                                 << "' (shape " << at::IntArrayRef(shape) << ")");
}

/// The floating tensor `name`, checked against the shape config.json implies.
at::Tensor floatingTensor(const SafetensorsCheckpoint& checkpoint, const std::string& name,
                          const std::vector<int64_t>& shape) {
  const auto& file = checkpoint.fileOf(name).path().string();
  const auto& e = checkpoint.entry(name);
  LOOM_INPUT_CHECK(at::isFloatingType(e.dtype),
                   "checkpoint file " << file << ", tensor '" << name << "': dtype "
                                      << safetensorsDtypeName(e.dtype)
                                      << " where a floating dtype (F32, BF16, F16) was expected");
  LOOM_INPUT_CHECK(at::IntArrayRef(e.shape) == at::IntArrayRef(shape),
                   "checkpoint file " << file << ", tensor '" << name << "': shape "
                                      << at::IntArrayRef(e.shape) << " where config.json implies "
                                      << at::IntArrayRef(shape));
  return checkpoint.tensor(name);
}

}  // namespace
}  // namespace detail

at::ScalarType parseDtypeName(const std::string& name, const std::string& source) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16") return at::kHalf;
  LOOM_INPUT_CHECK(false, source << ": unsupported dtype '" << name
                                 << "' (expected float32, bfloat16 or float16)");
}

std::string dtypeName(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "float32";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    default:
      LOOM_CHECK(false, "no Hugging Face name for dtype " << c10::toString(dtype));
  }
}

void loadWeights(CausalLm& model, const SafetensorsCheckpoint& checkpoint) {
  using detail::floatingTensor;
  using detail::requirePresent;
  refuseQuantizedWeights(checkpoint);
  std::set<std::string> used;
  at::NoGradGuard no_grad;
  const c10::Device device = model.options().device;
  // NF4 projections (QLoRA): a bitsandbytes 4-bit tensor is taken as it is; a floating one is
  // quantized here, on the CPU from its stored values, one tensor at a time, so neither the
  // 16-bit weights nor the result's peak ever sit on the device whole.
  for (auto& [path, proj] : model.projections()) {
    if (!proj->quantized()) continue;
    const std::string name = path + ".weight";
    const std::vector<int64_t> shape{proj->outFeatures(), proj->inFeatures()};
    requirePresent(checkpoint, name, shape);
    if (isBnb4bitTensor(checkpoint, name)) {
      proj->setNf4(readBnb4bit(checkpoint, name, shape).to(device));
      for (const auto& key : bnb4bitKeys(checkpoint, name)) used.insert(key);
      continue;
    }
    proj->setNf4(quantizeNf4(floatingTensor(checkpoint, name, shape)).to(device));
    used.insert(name);
  }
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    if (name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos) {
      continue;
    }
    auto& param = item.value();
    const std::vector<int64_t> shape = param.sizes().vec();
    requirePresent(checkpoint, name, shape);
    if (isBnb4bitTensor(checkpoint, name)) {
      // A 4-bit checkpoint under LoRA, full fine-tuning or export: its dequantized values.
      param.copy_(dequantizeNf4(readBnb4bit(checkpoint, name, shape), at::kFloat));
      for (const auto& key : bnb4bitKeys(checkpoint, name)) used.insert(key);
      continue;
    }
    param.copy_(floatingTensor(checkpoint, name, shape));
    used.insert(name);
  }
  for (const auto& name : checkpoint.names()) {
    if (used.count(name)) continue;
    if (model.config().tie_word_embeddings && name == "lm_head.weight") continue;
    if (endsWith(name, "rotary_emb.inv_freq")) continue;  // a buffer older files carry
    LOOM_INPUT_CHECK(false, "checkpoint file " << checkpoint.fileOf(name).path().string()
                                               << ": unexpected tensor '" << name
                                               << "' (no such parameter in a "
                                               << model.config().model_type << " model)");
  }
}

std::shared_ptr<CausalLm> loadModel(const std::filesystem::path& dir,
                                    const DecoderOptions& options) {
  auto config = loadHfConfig(dir);
  auto checkpoint = SafetensorsCheckpoint::open(dir);
  auto model = std::make_shared<CausalLm>(std::move(config), options);
  loadWeights(*model, checkpoint);
  return model;
}

NamedTensors fullModelState(CausalLm& model, at::ScalarType dtype) {
  for (auto& [path, proj] : model.projections()) {
    LOOM_CHECK(!proj->quantized(), "fullModelState: " << path
                                                      << " holds an NF4 weight; save from a "
                                                         "model loaded without nf4_base");
  }
  NamedTensors out;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    LOOM_CHECK(name.find(".lora_") == std::string::npos,
               "fullModelState: the model has LoRA branches (" << name << "): merge them first");
    out.emplace_back(name, item.value().detach().to(dtype));
  }
  return out;
}

std::string hfConfigJson(const HfConfig& c) {
  nlohmann::ordered_json j;
  const char* arch = c.model_type == "qwen3"   ? "Qwen3ForCausalLM"
                     : c.model_type == "qwen2" ? "Qwen2ForCausalLM"
                                               : "LlamaForCausalLM";
  j["architectures"] = {arch};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2") j["attention_bias"] = c.attention_bias;
  if (c.model_type == "llama") j["mlp_bias"] = c.mlp_bias;
  nlohmann::ordered_json rope;
  rope["rope_type"] = c.rope_scaling.kind;
  rope["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.kind == "llama3") {
    rope["factor"] = c.rope_scaling.factor;
    rope["low_freq_factor"] = c.rope_scaling.low_freq_factor;
    rope["high_freq_factor"] = c.rope_scaling.high_freq_factor;
    rope["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
  }
  j["rope_parameters"] = rope;
  j["dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

void saveFullModel(CausalLm& model, const std::filesystem::path& out_dir,
                   const std::filesystem::path& source_dir, at::ScalarType dtype,
                   uint64_t max_shard_bytes) {
  namespace fs = std::filesystem;
  fs::create_directories(out_dir);
  const bool same_dir =
      !source_dir.empty() && fs::exists(source_dir) && fs::equivalent(source_dir, out_dir);
  saveSafetensorsSharded(out_dir, fullModelState(model, dtype), max_shard_bytes);
  if (!source_dir.empty() && !same_dir) {
    for (const char* name : detail::kCompanionFiles) {
      const auto from = source_dir / name;
      if (fs::exists(from)) writeFileAtomic(out_dir / name, readFileOrThrow(from, "model file"));
    }
  }
  std::string config_text;
  const auto source_config = source_dir.empty() ? fs::path() : source_dir / "config.json";
  if (!source_config.empty() && fs::exists(source_config)) {
    auto j = nlohmann::ordered_json::parse(readFileOrThrow(source_config, "model config"));
    j["dtype"] = dtypeName(dtype);
    if (j.contains("torch_dtype")) j["torch_dtype"] = dtypeName(dtype);
    j.erase("quantization_config");  // the weights written are floating, even from a 4-bit base
    config_text = j.dump(2) + "\n";
  } else {
    HfConfig c = model.config();
    c.torch_dtype = dtypeName(dtype);
    config_text = hfConfigJson(c);
  }
  writeFileAtomic(out_dir / "config.json", config_text);
}

void saveMergedModel(CausalLm& model, const std::filesystem::path& out_dir,
                     const std::filesystem::path& source_dir, at::ScalarType dtype,
                     uint64_t max_shard_bytes) {
  mergeLora(model);
  saveFullModel(model, out_dir, source_dir, dtype, max_shard_bytes);
}

ParameterCounts countParameters(const HfConfig& c, const LoraSpec* lora) {
  ParameterCounts p;
  const int64_t h = c.hidden_size, d = c.head_dim, i = c.intermediate_size;
  const int64_t q_out = c.num_attention_heads * d, kv_out = c.num_key_value_heads * d;
  const bool qkv_bias = c.attention_bias || c.qkv_bias;
  struct Shape {
    const char* name;
    int64_t in, out;
  };
  const Shape shapes[] = {{"q_proj", h, q_out}, {"k_proj", h, kv_out}, {"v_proj", h, kv_out},
                          {"o_proj", q_out, h}, {"gate_proj", h, i},   {"up_proj", h, i},
                          {"down_proj", i, h}};
  int64_t attn = h * q_out + 2 * h * kv_out + q_out * h;
  if (qkv_bias) attn += q_out + 2 * kv_out;
  if (c.attention_bias) attn += h;
  if (c.qk_norm) attn += 2 * d;
  int64_t mlp = 3 * h * i + (c.mlp_bias ? 2 * i + h : 0);
  p.embedding = c.vocab_size * h;
  p.attention = attn * c.num_hidden_layers;
  p.mlp = mlp * c.num_hidden_layers;
  p.norms = 2 * h * c.num_hidden_layers + h;
  p.lm_head = c.tie_word_embeddings ? 0 : c.vocab_size * h;
  p.total = p.embedding + p.attention + p.mlp + p.norms + p.lm_head;
  if (lora) {
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
      for (const auto& s : shapes) {
        const std::string path = "model.layers." + std::to_string(layer) +
                                 (s.name[1] == '_' ? ".self_attn." : ".mlp.") + s.name;
        if (lora->targets(path)) p.lora += lora->rank * (s.in + s.out);
      }
    }
    p.trainable = p.lora;
  } else {
    p.trainable = p.total;
  }
  return p;
}

std::vector<MemoryEstimate> estimateMemory(const HfConfig& config, const LoraSpec* lora) {
  const auto p = countParameters(config, lora);
  std::vector<MemoryEstimate> out;
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const uint64_t size = c10::elementSize(dtype);
    MemoryEstimate m;
    m.dtype = dtypeName(dtype);
    m.weights = p.total * size + p.lora * 4;
    if (lora) {
      m.gradients = p.lora * 4;
      m.optimizer = p.lora * 8;
    } else {
      m.gradients = p.total * size;
      m.optimizer = p.total * 8 + (size < 4 ? p.total * 4 : 0);
    }
    out.push_back(m);
  }
  return out;
}

std::string describeModel(const HfConfig& c, const LoraSpec* lora) {
  using detail::humanBytes;
  using detail::humanCount;
  const auto p = countParameters(c, lora);
  std::ostringstream s;
  s << "architecture: " << c.model_type << ", " << c.num_hidden_layers << " layers, hidden "
    << c.hidden_size << ", intermediate " << c.intermediate_size << ", heads "
    << c.num_attention_heads << " (kv " << c.num_key_value_heads << ", head_dim " << c.head_dim
    << "), vocab " << c.vocab_size << ", " << (c.tie_word_embeddings ? "tied" : "untied")
    << " embeddings, rope " << c.rope_scaling.kind << " theta " << c.rope_theta << ", dtype "
    << c.torch_dtype << "\n";
  s << "parameters: " << humanCount(p.total) << " (" << p.total << ")\n"
    << "  embedding " << humanCount(p.embedding) << ", attention " << humanCount(p.attention)
    << ", mlp " << humanCount(p.mlp) << ", norms " << humanCount(p.norms) << ", lm_head "
    << (p.lm_head ? humanCount(p.lm_head) : std::string("tied")) << "\n";
  if (lora) {
    s << "fine-tuning: LoRA r=" << lora->rank << " alpha=" << lora->alpha
      << (lora->use_rslora ? " (rsLoRA)" : "") << ", scaling " << lora->scaling() << "\n";
  } else {
    s << "fine-tuning: full\n";
  }
  char pct[32];
  std::snprintf(pct, sizeof(pct), "%.3f%%", 100.0 * p.trainable / std::max<int64_t>(1, p.total));
  s << "trainable parameters: " << humanCount(p.trainable) << " (" << p.trainable << ", " << pct
    << " of the base)\n";
  s << "memory estimate (activations excluded; AdamW with fp32 moments):\n";
  for (const auto& m : estimateMemory(c, lora)) {
    s << "  " << m.dtype << ": weights " << humanBytes(m.weights) << ", gradients "
      << humanBytes(m.gradients) << ", optimizer " << humanBytes(m.optimizer) << ", total "
      << humanBytes(m.total()) << "\n";
  }
  return s.str();
}

}  // namespace loom

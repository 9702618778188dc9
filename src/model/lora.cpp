#include "loom/model/lora.hpp"

#include <pcre2.h>
#include <cmath>
#include <set>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/strings.hpp"
#include "loom/core/text_encoding.hpp"
#include "loom/model/decoder.hpp"

namespace loom {
namespace detail {
namespace {

constexpr const char* kPeftPrefix = "base_model.model.";

std::string shortName(const std::string& module_path) {
  const auto dot = module_path.rfind('.');
  return dot == std::string::npos ? module_path : module_path.substr(dot + 1);
}

}  // namespace
}  // namespace detail

namespace detail {
namespace {
// PEFT's regex target_modules (Python re.fullmatch), through PCRE2 rather than std::regex:
// libtorch carries its own instantiations of libstdc++'s regex internals, which crashed
// when mixed with ours on a machine with another compiler (see train/checkpoint.cpp).
pcre2_code* compileRegex(const std::string& pattern, std::string* error) {
  int code = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* re =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &code, &offset, nullptr);
  if (re == nullptr && error != nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof(buf));
    *error =
        reinterpret_cast<const char*>(buf) + std::string(" at offset ") + std::to_string(offset);
  }
  return re;
}

bool fullMatch(const std::string& pattern, const std::string& text) {
  pcre2_code* re = compileRegex(pattern, nullptr);
  if (re == nullptr) return false;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  const int rc =
      pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return rc >= 0;
}
}  // namespace
}  // namespace detail

double LoraSpec::scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / rank;
}

bool LoraSpec::targets(const std::string& module_path) const {
  if (detail::shortName(module_path) == "lm_head") return false;
  if (!target_regex.empty()) return detail::fullMatch(target_regex, module_path);
  for (const auto& t : target_modules) {
    if (t == "all-linear" || module_path == t || endsWith(module_path, "." + t)) {
      return true;
    }
  }
  return false;
}

void LoraSpec::validate(const std::string& source) const {
  LOOM_INPUT_CHECK(rank > 0, source << ": LoRA rank r must be positive, got " << rank);
  LOOM_INPUT_CHECK(dropout >= 0.0 && dropout < 1.0,
                   source << ": LoRA dropout must be in [0, 1), got " << dropout);
  LOOM_INPUT_CHECK(!target_modules.empty() || !target_regex.empty(),
                   source << ": LoRA target_modules is empty");
  if (!target_regex.empty()) {
    std::string error;
    pcre2_code* re = detail::compileRegex(target_regex, &error);
    LOOM_INPUT_CHECK(re != nullptr, source << ": target_modules '" << target_regex
                                           << "' is not a valid regular expression: " << error);
    pcre2_code_free(re);
    return;
  }
  const auto& known = loraModuleNames();
  for (const auto& t : target_modules) {
    const auto name = detail::shortName(t);
    LOOM_INPUT_CHECK(
        t == "all-linear" || std::find(known.begin(), known.end(), name) != known.end(),
        source << ": unknown LoRA target '" << t
               << "' (expected all-linear or q_proj, k_proj, v_proj, o_proj, "
                  "gate_proj, up_proj, down_proj)");
  }
}

void applyLora(CausalLm& model, const LoraSpec& spec) {
  spec.validate("LoRA config");
  for (auto& p : model.parameters()) p.requires_grad_(false);
  int matched = 0;
  for (auto& [path, proj] : model.projections()) {
    if (!spec.targets(path)) continue;
    proj->enableLora(spec.rank, spec.scaling(), spec.dropout, spec.dtype);
    ++matched;
  }
  LOOM_INPUT_CHECK(matched > 0, "LoRA config: target_modules match no projection of the model");
}

std::map<std::string, at::Tensor> makeLoraComputeCopies(CausalLm& model, at::ScalarType dtype) {
  std::map<std::string, at::Tensor> copies;
  if (dtype != at::kBFloat16 && dtype != at::kHalf) return copies;
  for (auto& [path, proj] : model.projections()) {
    if (!proj->hasLora() || proj->loraDropout() > 0.0 || proj->loraA().scalar_type() == dtype) {
      continue;
    }
    proj->makeLoraComputeCopies(dtype);
    copies.emplace(path + ".lora_A.weight", proj->loraComputeA());
    copies.emplace(path + ".lora_B.weight", proj->loraComputeB());
  }
  return copies;
}

void enableFullFinetune(CausalLm& model) {
  for (auto& p : model.parameters()) p.requires_grad_(true);
}

NamedTensors loraState(CausalLm& model) {
  NamedTensors out;
  for (auto& [path, proj] : model.projections()) {
    if (!proj->hasLora()) continue;
    out.emplace_back(detail::kPeftPrefix + path + ".lora_A.weight", proj->loraA());
    out.emplace_back(detail::kPeftPrefix + path + ".lora_B.weight", proj->loraB());
  }
  return out;
}

void saveAdapter(CausalLm& model, const LoraSpec& spec, const std::filesystem::path& dir,
                 const std::string& base_model_name_or_path) {
  auto state = loraState(model);
  LOOM_CHECK(!state.empty(), "saveAdapter: the model has no LoRA branches");
  std::set<std::string> targets;
  for (auto& [path, proj] : model.projections()) {
    if (proj->hasLora()) targets.insert(detail::shortName(path));
  }
  nlohmann::ordered_json c;
  c["peft_type"] = "LORA";
  c["task_type"] = "CAUSAL_LM";
  c["base_model_name_or_path"] = base_model_name_or_path;
  c["r"] = spec.rank;
  if (spec.alpha == std::floor(spec.alpha)) {
    c["lora_alpha"] = static_cast<int64_t>(spec.alpha);
  } else {
    c["lora_alpha"] = spec.alpha;
  }
  c["target_modules"] = std::vector<std::string>(targets.begin(), targets.end());
  c["lora_dropout"] = spec.dropout;
  c["bias"] = "none";
  c["fan_in_fan_out"] = false;
  c["use_rslora"] = spec.use_rslora;
  c["use_dora"] = false;
  c["lora_bias"] = false;
  c["init_lora_weights"] = true;
  c["inference_mode"] = true;
  c["modules_to_save"] = nullptr;
  c["layers_to_transform"] = nullptr;
  c["layers_pattern"] = nullptr;
  c["rank_pattern"] = nlohmann::ordered_json::object();
  c["alpha_pattern"] = nlohmann::ordered_json::object();
  c["revision"] = nullptr;
  std::filesystem::create_directories(dir);
  saveSafetensors(dir / "adapter_model.safetensors", state);
  writeFileAtomic(dir / "adapter_config.json", c.dump(2) + "\n");
}

LoraSpec loadAdapterConfig(const std::filesystem::path& dir) {
  const auto file = dir / "adapter_config.json";
  const std::string src = file.string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(readUtf8TextFile(file, "adapter config"));
  } catch (const nlohmann::json::exception& e) {
    LOOM_INPUT_CHECK(false, src << ": not valid JSON (" << printableText(e.what()) << ")");
  }
  LOOM_INPUT_CHECK(j.is_object(), src << ": expected a JSON object");
  LOOM_INPUT_CHECK(j.value("peft_type", "") == "LORA",
                   src << ": peft_type must be \"LORA\", got " << j.value("peft_type", "(none)"));
  auto is_set = [&](const char* key) {
    if (!j.contains(key) || j[key].is_null()) return false;
    const auto& v = j[key];
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_object() || v.is_array()) return !v.empty();
    if (v.is_string()) return v.get<std::string>() != "none" && !v.get<std::string>().empty();
    return true;
  };
  for (const char* key :
       {"use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern", "modules_to_save",
        "layers_to_transform", "layer_replication", "lora_bias", "bias", "target_parameters",
        "trainable_token_indices", "use_qalora", "use_bdlora", "alora_invocation_tokens"}) {
    LOOM_INPUT_CHECK(!is_set(key),
                     src << ": '" << key << "' = " << j[key].dump() << " is not supported by Loom");
  }
  LoraSpec spec;
  LOOM_INPUT_CHECK(j.contains("r") && j["r"].is_number_integer(),
                   src << ": 'r' must be an integer");
  spec.rank = j["r"].get<int64_t>();
  LOOM_INPUT_CHECK(j.contains("lora_alpha") && j["lora_alpha"].is_number(),
                   src << ": 'lora_alpha' must be a number");
  spec.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && j["lora_dropout"].is_number()) {
    spec.dropout = j["lora_dropout"].get<double>();
  }
  if (j.contains("use_rslora") && j["use_rslora"].is_boolean()) {
    spec.use_rslora = j["use_rslora"].get<bool>();
  }
  LOOM_INPUT_CHECK(j.contains("target_modules"), src << ": missing 'target_modules'");
  const auto& tm = j["target_modules"];
  if (tm.is_string()) {
    if (tm.get<std::string>() == "all-linear") {
      spec.target_modules = {"all-linear"};
    } else {
      spec.target_modules.clear();
      spec.target_regex = tm.get<std::string>();
    }
  } else {
    LOOM_INPUT_CHECK(tm.is_array(), src << ": 'target_modules' must be a list or a string");
    spec.target_modules.clear();
    for (const auto& t : tm) {
      LOOM_INPUT_CHECK(t.is_string(), src << ": 'target_modules' entries must be strings");
      spec.target_modules.push_back(t.get<std::string>());
    }
  }
  spec.validate(src);
  return spec;
}

LoraSpec loadAdapter(CausalLm& model, const std::filesystem::path& dir) {
  LoraSpec spec = loadAdapterConfig(dir);
  const auto file = dir / "adapter_model.safetensors";
  LOOM_INPUT_CHECK(std::filesystem::exists(file),
                   "adapter " << dir.string()
                              << ": no adapter_model.safetensors (Loom does not "
                                 "read pickled adapter_model.bin)");
  for (auto& [path, proj] : model.projections()) {
    LOOM_CHECK(!proj->hasLora(), "loadAdapter: " << path << " already has a LoRA branch");
  }
  SafetensorsFile st(file);
  applyLora(model, spec);
  std::set<std::string> used;
  at::NoGradGuard no_grad;
  for (auto& [name, param] : loraState(model)) {
    LOOM_INPUT_CHECK(st.contains(name), "adapter file " << file.string() << ": missing tensor '"
                                                        << name << "' (expected by its config)");
    const auto& e = st.entry(name);
    LOOM_INPUT_CHECK(at::isFloatingType(e.dtype),
                     "adapter file " << file.string() << ", tensor '" << name << "': dtype "
                                     << safetensorsDtypeName(e.dtype)
                                     << " where a floating dtype (F32, BF16, F16) was expected");
    LOOM_INPUT_CHECK(at::IntArrayRef(e.shape) == param.sizes(),
                     "adapter file " << file.string() << ", tensor '" << name << "': shape "
                                     << at::IntArrayRef(e.shape) << " where the model needs "
                                     << param.sizes());
    param.copy_(st.tensor(name));
    used.insert(name);
  }
  for (const auto& name : st.names()) {
    LOOM_INPUT_CHECK(used.count(name), "adapter file "
                                           << file.string() << ": unexpected tensor '" << name
                                           << "' (no such LoRA weight in the model under "
                                           << dir.string() << "/adapter_config.json)");
  }
  return spec;
}

void mergeLora(CausalLm& model) {
  for (auto& [path, proj] : model.projections()) proj->mergeLora();
}

}  // namespace loom

#include "loom/train/resume_settings.hpp"

#include <sstream>

#include "loom/config/config.hpp"
#include "loom/train/agreement.hpp"

namespace loom {

std::vector<std::pair<std::string, std::string>> resumeSettings(const Config& c) {
  auto text = [](const auto& value) {
    std::ostringstream s;
    s << value;
    return s.str();
  };
  std::string targets;
  for (const auto& t : c.finetune.lora.targets) targets += (targets.empty() ? "" : "|") + t;
  return {{"model.path", c.model.path},
          {"finetune.method", toString(c.finetune.method)},
          {"finetune.lora.r", text(c.finetune.lora.r)},
          {"finetune.lora.alpha", text(c.finetune.lora.alpha)},
          {"finetune.lora.rslora", text(c.finetune.lora.rslora)},
          {"data.train", c.data.train},
          {"data.seq_len", text(c.data.seq_len)},
          {"data.packing", text(c.data.packing)},
          {"train.global_batch_tokens", text(c.train.global_batch_tokens.value_or(0))},
          {"train.global_batch_size", text(c.train.global_batch_size.value_or(0))},
          {"run.seed", text(c.run.seed)},
          {"finetune.lora.targets", targets}};
}

std::string resumeHash(const Config& c) {
  std::string joined;
  for (const auto& [key, value] : resumeSettings(c)) {
    if (key == "finetune.lora.targets" && value.empty()) continue;  // as the hash always did
    joined += (joined.empty() ? "" : "|") + value;
  }
  return identityHash(joined);
}

std::string changedSettings(const std::map<std::string, std::string>& saved, const Config& c) {
  std::string out;
  for (const auto& [key, value] : resumeSettings(c)) {
    const auto it = saved.find(key);
    if (it == saved.end() || it->second == value) continue;
    out += (out.empty() ? "" : ", ") + key + " " + it->second + " -> " + value;
  }
  return out;
}

}  // namespace loom

#include "loom/train/eval_samples.hpp"

#include "loom/data/chat_renderer.hpp"
#include "loom/data/prompts.hpp"
#include "loom/data/tokenizer.hpp"
#include "loom/model/decoder.hpp"

namespace loom {

EvalSamples::EvalSamples(const std::string& prompts_file, const std::string& model_dir,
                         int64_t max_new_tokens)
    : tokenizer_(std::make_unique<Tokenizer>(Tokenizer::fromDir(model_dir))),
      records_(readPromptsFile(prompts_file)) {
  const bool chat = ChatRenderer::available(model_dir, *tokenizer_);
  const PromptStyle style =
      promptStyleFor(*tokenizer_, chat ? "auto" : "none", /*thinking=*/true, "chat template");
  for (const auto& r : records_) {
    texts_.push_back(renderPrompt(style, r));
    where_.push_back(r.where);
  }
  settings_.sampling.max_new_tokens = max_new_tokens;
  settings_.batch_size = 8;
}

EvalSamples::~EvalSamples() = default;

std::vector<Answer> EvalSamples::answer(CausalLm& model) const {
  return answerPrompts(model, *tokenizer_, texts_, where_, settings_);
}

nlohmann::json EvalSamples::record(int64_t step, const std::vector<Answer>& answers) const {
  nlohmann::json samples = nlohmann::json::array();
  for (size_t i = 0; i < answers.size(); ++i) {
    samples.push_back({{"where", where_[i]},
                       {"prompt", question(i)},
                       {"answer", answers[i].text},
                       {"finish_reason", answers[i].finish_reason}});
  }
  return {{"step", step}, {"eval_samples", samples}};
}

std::string EvalSamples::markdown(const std::vector<Answer>& answers) const {
  std::string md;
  for (size_t i = 0; i < answers.size(); ++i) {
    // Quoted blocks keep the model's own line breaks and markdown from running together.
    auto quote = [](const std::string& text) {
      std::string out = "> ";
      for (char c : text) out += c == '\n' ? std::string("  \n> ") : std::string(1, c);
      return out;
    };
    md += "**" + std::to_string(i + 1) + ". " + question(i) + "**\n\n" + quote(answers[i].text) +
          "\n\n";
  }
  return md;
}

}  // namespace loom

#pragma once
// train.eval_prompts: a few prompts the model answers greedily at each evaluation, so a user
// watches the answers change as training goes. Read and rendered at set-up on every rank (a
// bad file stops the run before training, named by its key); answered on rank 0 only (the
// others wait at the next collective, within cluster.collective_timeout_s).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/data/prompts.hpp"
#include "loom/train/answer.hpp"

namespace loom {

class CausalLm;
class Tokenizer;

class EvalSamples {
 public:
  /// Reads `prompts_file` with the tokenizer of `model_dir` and renders its prompts (the
  /// tokenizer's chat template when it has a known one, else the prompts as they are).
  EvalSamples(const std::string& prompts_file, const std::string& model_dir,
              int64_t max_new_tokens);
  ~EvalSamples();

  size_t size() const { return records_.size(); }

  /// Greedy answers of `model` (training mode restored afterwards).
  std::vector<Answer> answer(CausalLm& model) const;

  /// The metrics.jsonl record: {"step", "eval_samples": [{"where", "prompt", "answer",
  /// "finish_reason"}]}.
  nlohmann::json record(int64_t step, const std::vector<Answer>& answers) const;

  /// TensorBoard's text: one markdown section per prompt.
  std::string markdown(const std::vector<Answer>& answers) const;

  /// The question of prompt `i` (its last user message).
  const std::string& question(size_t i) const { return records_[i].messages.back().content; }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<PromptRecord> records_;
  std::vector<std::string> texts_, where_;
  AnswerSettings settings_;
};

}  // namespace loom

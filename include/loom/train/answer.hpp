#pragma once
// Answers to rendered prompts: tokenized, generated in batches with the KV cache
// (model/generate), ended at EOS, the template's end of turn or a stop string, and decoded.
// `trainer generate`, `trainer compare` and train.eval_prompts all answer through here.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "loom/model/generate.hpp"

namespace loom {

class CausalLm;
class Tokenizer;

struct AnswerSettings {
  SamplingSettings sampling;       ///< stop_ids: the tokenizer's are added by answerPrompts
  std::vector<std::string> stops;  ///< an answer ends where one of these texts begins
  int64_t batch_size = 8;
};

struct Answer {
  std::string text;  ///< decoded without special tokens, cut before a stop string
  std::vector<int64_t> token_ids;
  std::string finish_reason;  ///< "stop", "stop_string" or "length"
  double tokens_per_s = 0;    ///< new tokens per second of its batch (prefill included)
};

/// Told the settled text of prompt `index` so far (for streaming one answer).
using AnswerTextCallback = std::function<void(size_t index, const std::string& text)>;
/// Told each batch's prompts [first, last) and its statistics.
using AnswerBatchCallback =
    std::function<void(size_t first, size_t last, const GenerationStats& stats)>;

/// The stop ids of `tokenizer`: EOS and the end-of-turn tokens it has (<|im_end|>,
/// <|eot_id|>, <|end_of_text|>, <|endoftext|>).
std::vector<int64_t> stopIdsOf(const Tokenizer& tokenizer);

/// Answers each prompt text (already rendered) with `model`. `where[i]` names prompt i in
/// errors (an empty prompt is an InputError naming it).
std::vector<Answer> answerPrompts(CausalLm& model, const Tokenizer& tokenizer,
                                  const std::vector<std::string>& prompts,
                                  const std::vector<std::string>& where,
                                  const AnswerSettings& settings,
                                  const AnswerTextCallback& on_text = {},
                                  const AnswerBatchCallback& on_batch = {});

}  // namespace loom

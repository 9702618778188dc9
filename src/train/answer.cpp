#include "loom/train/answer.hpp"

#include <algorithm>

#include "loom/core/error.hpp"
#include "loom/core/strings.hpp"
#include "loom/data/tokenizer.hpp"
#include "loom/model/decoder.hpp"

namespace loom {

namespace {

/// The text so far without a trailing partial character (U+FFFD from an incomplete UTF-8
/// sequence is held back until the next token completes it).
std::string settledText(const std::string& text) {
  const std::string replacement = "\xEF\xBF\xBD";
  if (endsWith(text, replacement)) {
    return text.substr(0, text.size() - 3);
  }
  return text;
}

}  // namespace

std::vector<int64_t> stopIdsOf(const Tokenizer& tokenizer) {
  std::vector<int64_t> ids;
  if (auto eos = tokenizer.eosId()) ids.push_back(*eos);
  for (const char* end_of_turn : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"}) {
    if (auto id = tokenizer.tokenToId(end_of_turn)) ids.push_back(*id);
  }
  return ids;
}

std::vector<Answer> answerPrompts(CausalLm& model, const Tokenizer& tokenizer,
                                  const std::vector<std::string>& prompts,
                                  const std::vector<std::string>& where,
                                  const AnswerSettings& settings, const AnswerTextCallback& on_text,
                                  const AnswerBatchCallback& on_batch) {
  LOOM_CHECK(where.size() == prompts.size(), "answerPrompts: one place per prompt");
  LOOM_CHECK(settings.batch_size > 0, "answerPrompts: batch size " << settings.batch_size);
  std::vector<std::vector<int64_t>> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto encoded = tokenizer.encode(prompts[i]);
    LOOM_INPUT_CHECK(!encoded.empty(), where[i] << ": the prompt is empty");
    ids.emplace_back(encoded.begin(), encoded.end());
  }
  SamplingSettings sampling = settings.sampling;
  for (int64_t id : stopIdsOf(tokenizer)) sampling.stop_ids.push_back(id);
  const int64_t pad = tokenizer.padId().value_or(tokenizer.eosId().value_or(0));

  std::vector<Answer> answers(prompts.size());
  const auto batch_size = static_cast<size_t>(settings.batch_size);
  for (size_t first = 0; first < prompts.size(); first += batch_size) {
    const size_t last = std::min(prompts.size(), first + batch_size);
    const std::vector<std::vector<int64_t>> batch(ids.begin() + static_cast<long>(first),
                                                  ids.begin() + static_cast<long>(last));
    std::vector<std::vector<int32_t>> so_far(batch.size());
    std::vector<std::string> shown(batch.size());
    std::vector<size_t> cut(batch.size(), std::string::npos);  // where a stop string begins
    auto on_token = [&](size_t row, int64_t token) {
      so_far[row].push_back(static_cast<int32_t>(token));
      if (settings.stops.empty() && !on_text) return false;
      const std::string text = tokenizer.decode(so_far[row], /*skip_special=*/true);
      for (const auto& s : settings.stops) {
        const size_t at = text.find(s);
        if (at != std::string::npos) {
          cut[row] = at;
          break;
        }
      }
      if (on_text) {
        const std::string settled = settledText(text.substr(0, std::min(text.size(), cut[row])));
        if (settled != shown[row]) {
          shown[row] = settled;
          on_text(first + row, settled);
        }
      }
      return cut[row] != std::string::npos;
    };
    GenerationStats stats;
    const auto results = generate(model, batch, sampling, pad, &stats, on_token);
    const double seconds = stats.prefill_s + stats.decode_s;
    for (size_t r = 0; r < results.size(); ++r) {
      Answer& a = answers[first + r];
      a.token_ids = results[r].tokens;
      a.finish_reason = results[r].finish_reason;
      const std::vector<int32_t> new_ids(a.token_ids.begin(), a.token_ids.end());
      a.text = tokenizer.decode(new_ids, /*skip_special=*/true);
      if (cut[r] != std::string::npos) a.text = a.text.substr(0, cut[r]);
      a.tokens_per_s = seconds > 0 ? static_cast<double>(stats.new_tokens) / seconds : 0.0;
    }
    if (on_batch) on_batch(first, last, stats);
  }
  return answers;
}

}  // namespace loom

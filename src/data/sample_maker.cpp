// See sample_maker.hpp; the formats' rules are in prepare.hpp.

#include "sample_maker.hpp"

#include <algorithm>

#include "loom/core/error.hpp"
#include "loom/core/json_fields.hpp"
#include "loom/core/text_encoding.hpp"
#include "loom/data/tokenizer.hpp"

namespace loom::detail {

using nlohmann::ordered_json;

SampleMaker::SampleMaker(const Tokenizer& tokenizer, const PrepareOptions& options,
                         SampleRecipe recipe)
    : tokenizer_(tokenizer), options_(options), recipe_(std::move(recipe)) {}

RecordResult SampleMaker::make(const RawRecord& raw) const {
  RecordResult result;
  result.source = raw.source;
  result.validation = raw.validation;
  result.copies = raw.copies;
  if (raw.error) {
    result.error = raw.error;
    return result;
  }
  try {
    makeInto(raw, result);
  } catch (const InputError& e) {
    // Errors from deeper code (the tokenizer, the chat renderer) may not know the record.
    const std::string what = e.what();
    result.error = what.rfind(raw.where, 0) == 0
                       ? std::current_exception()
                       : std::make_exception_ptr(InputError(raw.where + ": " + what));
  } catch (...) {
    result.error = std::current_exception();
  }
  return result;
}

void SampleMaker::makeInto(const RawRecord& raw, RecordResult& result) const {
  if (raw.plain) {
    size_t bad = 0;
    LOOM_INPUT_CHECK(isValidUtf8(raw.text, &bad),
                     raw.where << ": invalid UTF-8 at byte " << bad << " of the line");
    makeText(raw.text, result);
    return;
  }
  ordered_json parsed;
  if (!raw.parsed) {
    try {
      parsed = ordered_json::parse(raw.text);
    } catch (const nlohmann::json::parse_error& e) {
      LOOM_INPUT_CHECK(false, raw.where << ": malformed JSON (column " << e.byte
                                        << "): " << printableText(e.what()));
    } catch (const nlohmann::json::exception& e) {  // e.g. a number beyond a double's range
      LOOM_INPUT_CHECK(false, raw.where << ": malformed JSON: " << printableText(e.what()));
    }
  }
  const ordered_json& record = raw.parsed ? raw.value : parsed;
  LOOM_INPUT_CHECK(record.is_object(),
                   raw.where << ": expected a JSON object, got " << record.type_name());
  const RecordFields& fields = options_.fields;
  switch (options_.format) {
    case PrepareFormat::kText: {
      const std::string expected = "--format text records are {\"" + fields.text + "\"}";
      makeText(requireString(record, fields.text.c_str(), raw.where, expected.c_str()), result);
      return;
    }
    case PrepareFormat::kAlpaca:
      makeChat(alpacaConversation(record, fields, raw.where), result);
      return;
    case PrepareFormat::kChat:
      makeChat(chatConversation(record, fields, raw.where), result);
      return;
    case PrepareFormat::kShareGpt:
      makeChat(sharegptConversation(record, fields, raw.where), result);
      return;
    case PrepareFormat::kTemplate:
      makeTemplate(record, raw.where, result);
      return;
  }
}

void SampleMaker::appendEnd(std::vector<int32_t>& ids) const {
  ids.insert(ids.end(), recipe_.suffix.begin(), recipe_.suffix.end());
  // EOS ends every text/template sample, once: a post-processor that adds it already counts.
  if (recipe_.suffix.empty() || recipe_.suffix.back() != *recipe_.eos) ids.push_back(*recipe_.eos);
}

void SampleMaker::makeText(const std::string& text, RecordResult& result) const {
  if (text.empty()) {
    result.status = RecordStatus::kEmpty;
    return;
  }
  std::vector<int32_t> ids = recipe_.prefix;
  ids.reserve(text.size() / 3 + 2 + recipe_.prefix.size() + recipe_.suffix.size());
  tokenizer_.encode(text, ids);
  appendEnd(ids);
  // Pieces overlap by one token: the first token of a sample is never a target, so the
  // overlap makes every token after the document's first a target exactly once.
  const auto n = static_cast<int64_t>(ids.size());
  const int64_t seq_len = options_.seq_len;
  for (int64_t begin = 0;; begin += seq_len - 1) {
    const int64_t end = std::min(n, begin + seq_len);
    Piece p;
    p.ids.assign(ids.begin() + begin, ids.begin() + end);
    p.mask.assign(p.ids.size(), 1);
    result.pieces.push_back(std::move(p));
    if (end == n) break;
  }
}

void SampleMaker::makeChat(ordered_json messages, RecordResult& result) const {
  addDefaultSystem(messages, options_.system_prompt);
  if (options_.train_on != TrainOn::kLastAssistant && !hasAnswer(messages)) {
    result.status = RecordStatus::kEmpty;
    return;
  }
  // A reasoning trace: a reasoning field, or Qwen3's `<think>...</think>` inside the content.
  bool reasoning = false;
  for (const auto& m : messages) {
    reasoning |= !m.value("reasoning_content", "").empty() ||
                 (m.value("role", "") == "assistant" &&
                  m.value("content", "").find("</think>") != std::string::npos);
  }
  ChatRenderOptions render;
  render.train_on = options_.train_on;
  // auto: thinking on exactly when the conversation carries a reasoning trace, so an answer
  // without one is trained after the empty think block, as inference with thinking off
  // prompts it, and a trace is trained as the model's own thinking.
  render.enable_thinking = options_.thinking ? *options_.thinking : reasoning;
  LOOM_INPUT_CHECK(!reasoning || render.enable_thinking,
                   "a reasoning trace, which --thinking off would train without the start of "
                   "its think block; use --thinking auto (the default) or on");
  ChatSample sample = recipe_.renderer->encode(tokenizer_, messages, render);
  if (options_.train_on == TrainOn::kLastAssistant &&
      std::find(sample.loss_mask.begin(), sample.loss_mask.end(), 1) == sample.loss_mask.end()) {
    result.status = RecordStatus::kEmpty;
    return;
  }
  addSample(std::move(sample.ids), std::move(sample.loss_mask), result);
}

void SampleMaker::makeTemplate(const ordered_json& record, const std::string& where,
                               RecordResult& result) const {
  const std::string prompt = renderTemplate(recipe_.prompt, record, where);
  const std::string completion = renderTemplate(recipe_.completion, record, where);
  if (completion.empty()) {
    result.status = RecordStatus::kEmpty;
    return;
  }
  std::vector<int32_t> ids = recipe_.prefix;
  ids.reserve((prompt.size() + completion.size()) / 3 + 2 + recipe_.prefix.size());
  tokenizer_.encode(prompt, ids);
  const size_t prompt_tokens = ids.size();
  tokenizer_.encode(completion, ids);
  appendEnd(ids);
  std::vector<uint8_t> mask(ids.size(), 1);
  if (options_.train_on != TrainOn::kAll) {
    std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(prompt_tokens), 0);
  }
  addSample(std::move(ids), std::move(mask), result);
}

void SampleMaker::addSample(std::vector<int32_t> ids, std::vector<uint8_t> mask,
                            RecordResult& result) const {
  const int64_t seq_len = options_.seq_len;
  if (static_cast<int64_t>(ids.size()) > seq_len) {
    if (options_.on_overflow == OverflowPolicy::kDrop) {
      result.status = RecordStatus::kDropped;
      return;
    }
    ids.resize(static_cast<size_t>(seq_len));
    mask.resize(static_cast<size_t>(seq_len));
    // Position 0 is never a target; a sample with nothing left to learn is not kept.
    if (std::find(mask.begin() + 1, mask.end(), 1) == mask.end()) {
      result.status = RecordStatus::kDropped;
      return;
    }
    result.status = RecordStatus::kTruncated;
  }
  result.pieces.push_back({std::move(ids), std::move(mask)});
}

}  // namespace loom::detail

#pragma once
// Prompts to generate answers for (`trainer generate`, `trainer compare`, train.eval_prompts),
// read from a JSONL file and rendered with the model family's chat template, generation
// prompt appended, as the model sees a question at inference.
//
// A prompts file has one JSON object a line, in one of these shapes (blank lines skipped):
//   {"prompt": "...", "reference": "..."?}                 (also "answer" or "output")
//   alpaca {"instruction", "input"?, "system"?, "output"?}  ("output" is the reference)
//   chat {"messages": [...]}       (a final assistant message is the reference, left out)
// The reference answer is optional except where a command scores answers against it.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "loom/data/chat_template.hpp"

namespace loom {

class Tokenizer;

struct PromptRecord {
  std::vector<ChatMessage> messages;     ///< the conversation to answer (ends with a user turn)
  std::optional<std::string> reference;  ///< the expected answer, when the record has one
  std::string where;                     ///< "prompts.jsonl:7", "--prompt 2"
};

/// Reads a prompts file (UTF-8, see above). InputError naming the file and line for a line
/// that is not a JSON object, a missing or non-string field, a conversation that ends with
/// the assistant, or a file without prompts.
std::vector<PromptRecord> readPromptsFile(const std::filesystem::path& file);

/// How prompts become text: the family's template (none: a single user message as it is) and,
/// for Qwen3 (a tokenizer with a <think> token), whether thinking is on; off appends the
/// empty think block, as Qwen3's template does for enable_thinking=False.
struct PromptStyle {
  std::optional<ChatTemplate> family;
  bool thinking = true;
  bool qwen3 = false;  ///< the tokenizer has <think>: the thinking switch applies
};

/// The style for `tokenizer` and a --chat-template value ("auto", "qwen", "llama3", "none");
/// `flag` names the option in errors. InputError when auto finds no known family.
PromptStyle promptStyleFor(const Tokenizer& tokenizer, const std::string& chat_template,
                           bool thinking, const std::string& flag);

/// The text the model is given for `record`: its conversation rendered with the generation
/// prompt. InputError naming record.where when a template-less style gets a conversation.
std::string renderPrompt(const PromptStyle& style, const PromptRecord& record);

}  // namespace loom

#pragma once
// Prompts to generate answers for (`trainer generate`, `trainer compare`, train.eval_prompts),
// read from a JSONL file and rendered with the model's own chat template, generation prompt
// appended, as the model sees a question at inference (and as `trainer prepare` rendered its
// training conversations).
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

#include "loom/data/chat_renderer.hpp"
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

/// How prompts become text: the model's chat template (chat_renderer.hpp; none: a single user
/// message as it is) and whether thinking is on. Off renders Qwen3's enable_thinking=False,
/// which appends the empty think block.
struct PromptStyle {
  std::optional<ChatRenderer> renderer;
  bool thinking = true;
};

/// The style for `tokenizer` and a --chat-template value ("auto": the tokenizer folder's own
/// template, else a built-in one by its tokens; "qwen", "llama3": built-in; "none"; or a Jinja
/// file); `flag` names the option in errors. InputError when auto finds nothing to render with.
PromptStyle promptStyleFor(const Tokenizer& tokenizer, const std::string& chat_template,
                           bool thinking, const std::string& flag);

/// The text the model is given for `record`: its conversation rendered with the generation
/// prompt. InputError naming record.where when a template-less style gets a conversation.
std::string renderPrompt(const PromptStyle& style, const PromptRecord& record);

}  // namespace loom

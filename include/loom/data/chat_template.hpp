#pragma once
// Chat templates of the supported model families, rendered natively (no Jinja) so that
// `trainer prepare --format chat` gives exactly the text that transformers'
// `apply_chat_template(messages, tokenize=False)` gives, and knows which parts of it are
// the assistant's own output.
//
//   qwen    ChatML as Qwen3's tokenizer_config.json renders it: `<|im_start|>role\n...
//           <|im_end|>\n`; a leading system message first; assistant turns after the last
//           user message carry a `<think>\n...\n</think>\n\n` block (empty for the final
//           turn when there is no reasoning), reasoning is dropped from earlier turns, and
//           `<think>...</think>` inside an assistant's content is split off as Qwen3 does.
//           Qwen2.5's own template differs: it has no think blocks and inserts a default
//           system prompt when the conversation has none.
//   llama3  Llama 3 Instruct: `<|begin_of_text|>` then
//           `<|start_header_id|>role<|end_header_id|>\n\n` + trimmed content + `<|eot_id|>`
//           (the 3.0 template; 3.1's "Cutting Knowledge Date" system preamble is not added).
//
// Loss (what the model is trained to produce): each assistant turn's content and its
// closing token (`<|im_end|>` / `<|eot_id|>`), because the model must learn to stop. Role
// headers, the newline after `<|im_end|>`, and the empty think block Qwen3 puts before a
// final answer are context, as they are in a generation prompt; a think block that carries
// reasoning is part of the target.

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom {

class Tokenizer;

enum class ChatTemplate { kQwen, kLlama3 };

/// "qwen" or "llama3"; InputError naming `where` (e.g. "--chat-template") otherwise.
ChatTemplate parseChatTemplate(std::string_view name, const std::string& where);

/// The name parseChatTemplate accepts for `family` (recorded in dataset attributes).
std::string_view chatTemplateName(ChatTemplate family);

/// One turn. `reasoning_content` is Qwen3's separate reasoning field (ignored by llama3).
struct ChatMessage {
  std::string role;  ///< "system", "user" or "assistant"
  std::string content;
  std::optional<std::string> reasoning_content;
};

/// Reads a `messages` array ([{"role": ..., "content": ...}, ...]). Throws InputError naming
/// `where` (e.g. "data.jsonl:12") and the message index for a missing or non-string field,
/// an unknown role, or an empty list.
std::vector<ChatMessage> parseChatMessages(const nlohmann::json& messages,
                                           const std::string& where);

/// The conversation of an alpaca record: an optional system message, then the user's
/// instruction with its input after a blank line (when there is one).
std::vector<ChatMessage> alpacaMessages(const std::string& system, const std::string& instruction,
                                        const std::string& input);

/// A run of the rendered text; `loss` is true for the assistant's output.
struct ChatSegment {
  std::string text;
  bool loss = false;
};

/// A rendered conversation: its segments, in order, concatenate to the template's text.
struct RenderedChat {
  std::vector<ChatSegment> segments;

  /// The whole text, equal to apply_chat_template(messages, tokenize=False).
  std::string text() const;
  /// Byte ranges [begin, end) of text() covered by loss segments.
  std::vector<std::pair<size_t, size_t>> lossSpans() const;
};

/// Renders `messages` with the family's template; `add_generation_prompt` appends the
/// assistant header (no loss) as for inference. Throws InputError (naming the message
/// index) for an unknown role or an empty list.
RenderedChat renderChat(ChatTemplate family, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

/// Token ids and per-token loss mask (1 = target) of a rendered conversation.
struct TokenizedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;
};

/// Tokenizes the whole text at once, so the ids equal tokenizing the template's string
/// (segment boundaries never change tokenization), and marks a token as a target when its
/// first byte lies in a loss segment. A token that straddles a boundary (e.g. "\n\n" made
/// of the header's newline and a newline that starts the content) follows its first byte.
TokenizedChat tokenizeChat(const Tokenizer& tokenizer, const RenderedChat& chat);

}  // namespace loom

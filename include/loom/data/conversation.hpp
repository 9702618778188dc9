#pragma once
// Conversations as `trainer prepare` reads them: every chat-shaped record format becomes one
// list of OpenAI-style messages ([{"role", "content", ...}, ...], key order kept), which the
// model's chat template then renders (chat_renderer.hpp).
//
//   chat      {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content", ...}]}:
//             passed through as given (tool_calls, names and other keys included), with
//             transformers' normalisation: keys whose value is null are dropped, and a
//             reasoning trace under "reasoning_content", "thinking" or "reasoning" is offered
//             under both "thinking" and "reasoning_content", as apply_chat_template does.
//   sharegpt  {"conversations": [{"from": "human"|"gpt"|"system"|"tool", "value"}],
//             "system"?}: the same conversation in messages form (human -> user, gpt ->
//             assistant, observation -> tool; "user"/"assistant" are accepted as they are).
//   alpaca    {"instruction", "input"?, "output", "system"?} and a reasoning field when one is
//             named: [system,] user (instruction, + "\n\n" + input when given), assistant
//             (output, with the reasoning as its reasoning_content).
// Field names can be remapped (--fields), e.g. the medical-o1 set's
// {"Question", "Complex_CoT", "Response"}: instruction=Question,reasoning=Complex_CoT,
// output=Response.

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "loom/data/chat_template.hpp"

namespace loom {

/// Where each format finds its fields. Defaults are the formats' usual names.
struct RecordFields {
  std::string instruction = "instruction";
  std::string input = "input";
  std::string output = "output";
  std::string system = "system";
  std::string reasoning;  ///< empty: records carry no reasoning trace
  std::string messages = "messages";
  std::string conversations = "conversations";
  std::string text = "text";
};

/// Parses "key=name,key=name" (keys: instruction, input, output, system, reasoning, messages,
/// conversations, text) over the defaults. InputError naming `where` for an unknown key, a
/// missing '=' or an empty name.
RecordFields parseRecordFields(std::string_view spec, const std::string& where);

/// The messages of a chat record, validated and normalised (see above). InputError naming
/// `where` (file:line) and the field, e.g. "messages[2].role", for anything malformed.
nlohmann::ordered_json chatConversation(const nlohmann::ordered_json& record,
                                        const RecordFields& fields, const std::string& where);

/// The messages of a ShareGPT record. InputError naming `where` and "conversations[i].from"
/// for an unknown speaker.
nlohmann::ordered_json sharegptConversation(const nlohmann::ordered_json& record,
                                            const RecordFields& fields, const std::string& where);

/// The messages of an alpaca record (see above).
nlohmann::ordered_json alpacaConversation(const nlohmann::ordered_json& record,
                                          const RecordFields& fields, const std::string& where);

/// Puts {"role": "system", "content": system} first when `system` is not empty and the
/// conversation has no system message of its own.
void addDefaultSystem(nlohmann::ordered_json& messages, const std::string& system);

/// Indices of the assistant messages, in order.
std::vector<size_t> assistantTurns(const nlohmann::ordered_json& messages);

/// True when some assistant message has content or a reasoning trace to learn.
bool hasAnswer(const nlohmann::ordered_json& messages);

/// Messages as JSON ({"role", "content", "reasoning_content"?}), e.g. for a prompt.
nlohmann::ordered_json toJsonMessages(const std::vector<ChatMessage>& messages);

/// The conversation as the built-in renderers take it (roles system, user, assistant only;
/// InputError naming `where` for a tool turn, which they cannot render).
std::vector<ChatMessage> toChatMessages(const nlohmann::ordered_json& messages,
                                        const std::string& where);

}  // namespace loom

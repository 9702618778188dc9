// Record formats -> OpenAI-style messages; see conversation.hpp.

#include "loom/data/conversation.hpp"

#include "loom/core/error.hpp"
#include "loom/core/json_fields.hpp"

namespace loom {

namespace {

using nlohmann::ordered_json;

// Names a message's reasoning trace comes under, the first found wins (transformers'
// _REASONING_FIELDS order).
constexpr const char* kReasoningKeys[] = {"reasoning_content", "thinking", "reasoning"};

bool knownRole(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

// transformers' apply_chat_template: null values dropped, then the reasoning trace offered as
// {"thinking": r, **message, "reasoning_content": r} (so gpt-oss and Qwen templates both find it).
ordered_json normalised(const ordered_json& message) {
  const ordered_json* reasoning = nullptr;
  for (const char* key : kReasoningKeys) {
    const auto it = message.find(key);
    if (it != message.end() && !it->is_null()) {
      reasoning = &*it;
      break;
    }
  }
  ordered_json out = ordered_json::object();
  if (reasoning) out["thinking"] = *reasoning;
  for (const auto& [key, value] : message.items()) {
    if (!value.is_null()) out[key] = value;
  }
  if (reasoning) out["reasoning_content"] = *reasoning;
  return out;
}

void checkMessage(const ordered_json& m, const std::string& where, const std::string& name) {
  LOOM_INPUT_CHECK(m.is_object(),
                   where << ": " << name << " must be an object, got " << m.type_name());
  const auto role = m.find("role");
  LOOM_INPUT_CHECK(role != m.end() && role->is_string(),
                   where << ": " << name << ".role must be a string");
  const std::string r = role->get<std::string>();
  LOOM_INPUT_CHECK(knownRole(r), where << ": " << name << ".role is \"" << r
                                       << "\"; expected system, user, assistant or tool");
  const auto content = m.find("content");
  const bool has_content = content != m.end() && !content->is_null();
  if (has_content) {
    LOOM_INPUT_CHECK(content->is_string(),
                     where << ": " << name << ".content must be a string, got "
                           << content->type_name()
                           << (content->is_array() ? " (content parts are not supported)" : ""));
  } else {
    const auto calls = m.find("tool_calls");
    LOOM_INPUT_CHECK(r == "assistant" && calls != m.end() && !calls->is_null(),
                     where << ": " << name
                           << ".content is missing (expected a string; only an "
                              "assistant turn with tool_calls may leave it out)");
  }
  for (const char* key : kReasoningKeys) {
    const auto it = m.find(key);
    LOOM_INPUT_CHECK(
        it == m.end() || it->is_null() || it->is_string(),
        where << ": " << name << "." << key << " must be a string, got " << it->type_name());
  }
}

const ordered_json& requireArray(const ordered_json& record, const std::string& field,
                                 const std::string& where, const char* shape) {
  const auto it = record.find(field);
  LOOM_INPUT_CHECK(it != record.end() && !it->is_null(),
                   where << ": missing field '" << field << "' (" << shape << ")");
  LOOM_INPUT_CHECK(it->is_array(), where << ": field '" << field << "' must be an array, got "
                                         << it->type_name() << " (" << shape << ")");
  LOOM_INPUT_CHECK(!it->empty(), where << ": field '" << field << "' is empty");
  return *it;
}

std::string sharegptRole(const std::string& from) {
  if (from == "human" || from == "user") return "user";
  if (from == "gpt" || from == "assistant") return "assistant";
  if (from == "system") return "system";
  if (from == "tool" || from == "observation") return "tool";
  return {};
}

}  // namespace

RecordFields parseRecordFields(std::string_view spec, const std::string& where) {
  RecordFields fields;
  size_t pos = 0;
  while (pos <= spec.size() && !spec.empty()) {
    const size_t comma = std::min(spec.find(',', pos), spec.size());
    const std::string_view item = spec.substr(pos, comma - pos);
    const size_t eq = item.find('=');
    LOOM_INPUT_CHECK(eq != std::string_view::npos && eq > 0 && eq + 1 < item.size(),
                     where << ": \"" << item << "\" is not KEY=NAME (e.g. output=Response)");
    const std::string key(item.substr(0, eq));
    const std::string name(item.substr(eq + 1));
    std::string* slot = key == "instruction"     ? &fields.instruction
                        : key == "input"         ? &fields.input
                        : key == "output"        ? &fields.output
                        : key == "system"        ? &fields.system
                        : key == "reasoning"     ? &fields.reasoning
                        : key == "messages"      ? &fields.messages
                        : key == "conversations" ? &fields.conversations
                        : key == "text"          ? &fields.text
                                                 : nullptr;
    LOOM_INPUT_CHECK(slot, where << ": unknown key \"" << key
                                 << "\"; expected instruction, input, output, system, "
                                    "reasoning, messages, conversations or text");
    *slot = name;
    pos = comma + 1;
  }
  return fields;
}

ordered_json chatConversation(const ordered_json& record, const RecordFields& fields,
                              const std::string& where) {
  const auto& messages = requireArray(record, fields.messages, where,
                                      "chat records are {\"messages\": [{\"role\", \"content\"}]}");
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    checkMessage(messages[i], where, fields.messages + "[" + std::to_string(i) + "]");
    out.push_back(normalised(messages[i]));
  }
  return out;
}

ordered_json sharegptConversation(const ordered_json& record, const RecordFields& fields,
                                  const std::string& where) {
  const auto& turns =
      requireArray(record, fields.conversations, where,
                   "sharegpt records are {\"conversations\": [{\"from\", \"value\"}]}");
  ordered_json out = ordered_json::array();
  const std::string system = optionalString(record, fields.system.c_str(), where);
  if (!system.empty()) out.push_back({{"role", "system"}, {"content", system}});
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string name = fields.conversations + "[" + std::to_string(i) + "]";
    const auto& t = turns[i];
    LOOM_INPUT_CHECK(t.is_object(),
                     where << ": " << name << " must be an object, got " << t.type_name());
    const std::string from =
        requireString(t, "from", where + ": " + name, "human, gpt, system or tool");
    const std::string role = sharegptRole(from);
    LOOM_INPUT_CHECK(!role.empty(), where << ": " << name << ".from is \"" << from
                                          << "\"; expected human, gpt, system or tool (also "
                                             "user, assistant, observation)");
    const std::string value = requireString(t, "value", where + ": " + name, "the turn's text");
    out.push_back({{"role", role}, {"content", value}});
  }
  return out;
}

ordered_json alpacaConversation(const ordered_json& record, const RecordFields& fields,
                                const std::string& where) {
  const std::string expected = "alpaca records are {\"" + fields.instruction + "\", \"" +
                               fields.input + "\" (optional), \"" + fields.output + "\"}";
  const std::string instruction =
      requireString(record, fields.instruction.c_str(), where, expected.c_str());
  const std::string input = optionalString(record, fields.input.c_str(), where);
  const std::string output = requireString(record, fields.output.c_str(), where, expected.c_str());
  const std::string system = optionalString(record, fields.system.c_str(), where);
  ordered_json out = ordered_json::array();
  if (!system.empty()) out.push_back({{"role", "system"}, {"content", system}});
  out.push_back(
      {{"role", "user"}, {"content", input.empty() ? instruction : instruction + "\n\n" + input}});
  ordered_json answer = {{"role", "assistant"}, {"content", output}};
  if (!fields.reasoning.empty()) {
    const std::string reasoning = requireString(
        record, fields.reasoning.c_str(), where,
        ("the reasoning field named by --fields reasoning=" + fields.reasoning).c_str());
    answer["reasoning_content"] = reasoning;
  }
  out.push_back(normalised(answer));
  return out;
}

void addDefaultSystem(ordered_json& messages, const std::string& system) {
  if (system.empty()) return;
  for (const auto& m : messages) {
    if (m.value("role", "") == "system") return;
  }
  messages.insert(messages.begin(), ordered_json{{"role", "system"}, {"content", system}});
}

std::vector<size_t> assistantTurns(const ordered_json& messages) {
  std::vector<size_t> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].value("role", "") == "assistant") out.push_back(i);
  }
  return out;
}

bool hasAnswer(const ordered_json& messages) {
  for (const size_t i : assistantTurns(messages)) {
    const auto& m = messages[i];
    if (!m.value("content", "").empty() || !m.value("reasoning_content", "").empty()) return true;
    const auto calls = m.find("tool_calls");
    if (calls != m.end() && !calls->empty()) return true;
  }
  return false;
}

ordered_json toJsonMessages(const std::vector<ChatMessage>& messages) {
  ordered_json out = ordered_json::array();
  for (const auto& m : messages) {
    ordered_json j = {{"role", m.role}, {"content", m.content}};
    if (m.reasoning_content) j["reasoning_content"] = *m.reasoning_content;
    out.push_back(normalised(j));
  }
  return out;
}

std::vector<ChatMessage> toChatMessages(const ordered_json& messages, const std::string& where) {
  std::vector<ChatMessage> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    ChatMessage msg;
    msg.role = m.value("role", "");
    LOOM_INPUT_CHECK(
        msg.role != "tool" && !m.contains("tool_calls"),
        where << ": messages[" << i
              << "] is a tool turn, which the built-in chat templates cannot render "
                 "(use a tokenizer whose tokenizer_config.json has its chat_template)");
    msg.content = m.value("content", "");
    if (m.contains("reasoning_content"))
      msg.reasoning_content = m.at("reasoning_content").get<std::string>();
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace loom

#include "loom/data/prompts.hpp"

#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/core/json_fields.hpp"
#include "loom/core/text_encoding.hpp"
#include "loom/data/conversation.hpp"
#include "loom/data/prepare.hpp"
#include "loom/data/tokenizer.hpp"

namespace loom {

namespace {

constexpr const char* kShapes =
    "a prompts line is {\"prompt\"}, alpaca {\"instruction\", \"input\"} or chat {\"messages\"}";

/// The reference answer of a {"prompt"} record: "reference", "answer" or "output".
std::optional<std::string> promptReference(const nlohmann::json& record, const std::string& where) {
  for (const char* key : {"reference", "answer", "output"}) {
    if (record.contains(key) && !record.at(key).is_null())
      return optionalString(record, key, where);
  }
  return std::nullopt;
}

PromptRecord parseRecord(const nlohmann::json& record, const std::string& where) {
  PromptRecord p;
  p.where = where;
  if (record.contains("messages")) {
    p.messages = parseChatMessages(record.at("messages"), where);
    if (p.messages.size() > 1 && p.messages.back().role == "assistant") {
      p.reference = p.messages.back().content;
      p.messages.pop_back();
    }
  } else if (record.contains("instruction")) {
    p.messages = alpacaMessages(optionalString(record, "system", where),
                                requireString(record, "instruction", where, kShapes),
                                optionalString(record, "input", where));
    if (record.contains("output") && !record.at("output").is_null()) {
      p.reference = optionalString(record, "output", where);
    }
  } else {
    p.messages.push_back({"user", requireString(record, "prompt", where, kShapes), std::nullopt});
    p.reference = promptReference(record, where);
  }
  LOOM_INPUT_CHECK(!p.messages.empty() && p.messages.back().role != "assistant",
                   where << ": nothing to answer (the conversation ends with the assistant)");
  return p;
}

}  // namespace

std::vector<PromptRecord> readPromptsFile(const std::filesystem::path& file) {
  const std::string text = readUtf8TextFile(file, "prompts file");
  std::vector<PromptRecord> out;
  size_t line_no = 0, begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = file.string() + ":" + std::to_string(line_no);
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      LOOM_INPUT_CHECK(false, where << ": malformed JSON (" << printableText(e.what()) << ")");
    }
    LOOM_INPUT_CHECK(record.is_object(), where << ": expected a JSON object (" << kShapes << ")");
    out.push_back(parseRecord(record, where));
  }
  LOOM_INPUT_CHECK(!out.empty(), file.string() << ": no prompts (the file is empty)");
  return out;
}

PromptStyle promptStyleFor(const Tokenizer& tokenizer, const std::string& chat_template,
                           bool thinking, const std::string& flag) {
  PromptStyle style;
  style.thinking = thinking;
  if (chat_template != "none") {
    style.renderer =
        ChatRenderer::forTokenizer(tokenizer.path().parent_path(), tokenizer, chat_template, flag);
  }
  return style;
}

std::string renderPrompt(const PromptStyle& style, const PromptRecord& record) {
  if (!style.renderer) {
    LOOM_INPUT_CHECK(
        record.messages.size() == 1 && record.messages[0].role == "user",
        record.where << ": --chat-template none takes plain prompts, not conversations");
    return record.messages[0].content;
  }
  ChatRenderOptions options;
  options.enable_thinking = style.thinking;
  try {
    return style.renderer->render(toJsonMessages(record.messages), true, options);
  } catch (const InputError& e) {
    throw InputError(record.where + ": " + e.what());
  }
}

}  // namespace loom

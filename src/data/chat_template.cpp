// Native renderings of the Qwen3 (ChatML) and Llama 3 chat templates; see
// chat_template.hpp for the templates' rules and the choice of loss segments.

#include "loom/data/chat_template.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "loom/core/error.hpp"
#include "loom/core/strings.hpp"
#include "loom/data/tokenizer.hpp"
#include "tokenizer_text.hpp"

namespace loom {

namespace {

// Python's str.isspace(): Unicode White_Space plus the separators U+001C..U+001F.
bool isPythonSpace(uint32_t cp) { return detail::isUnicodeSpace(cp) || (cp >= 0x1C && cp <= 0x1F); }

// Python str.strip() (Jinja's `trim` filter) on valid UTF-8.
std::string pythonStrip(const std::string& s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t p = begin;
    if (!isPythonSpace(detail::nextCodePoint(s, p))) break;
    begin = p;
  }
  size_t end = s.size();
  while (end > begin) {
    const uint32_t cp = detail::previousCodePoint(s, end);
    if (!isPythonSpace(cp)) break;
    size_t p = end - 1;
    while (p > begin && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
    end = p;
  }
  return s.substr(begin, end - begin);
}

std::string lstripNewlines(const std::string& s) {
  const size_t b = s.find_first_not_of('\n');
  return b == std::string::npos ? std::string() : s.substr(b);
}

std::string rstripNewlines(const std::string& s) {
  const size_t e = s.find_last_not_of('\n');
  return e == std::string::npos ? std::string() : s.substr(0, e + 1);
}

void checkRoles(const std::vector<ChatMessage>& messages) {
  LOOM_INPUT_CHECK(!messages.empty(), "chat: the conversation has no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& role = messages[i].role;
    LOOM_INPUT_CHECK(role == "system" || role == "user" || role == "assistant",
                     "chat: messages[" << i << "].role is \"" << role
                                       << "\"; expected system, user or assistant");
  }
}

class Builder {
 public:
  void add(const std::string& text, bool loss) {
    if (text.empty()) return;
    if (!chat_.segments.empty() && chat_.segments.back().loss == loss) {
      chat_.segments.back().text += text;
    } else {
      chat_.segments.push_back({text, loss});
    }
  }
  RenderedChat take() { return std::move(chat_); }

 private:
  RenderedChat chat_;
};

// Qwen3's tokenizer_config.json chat_template, without tools.
RenderedChat renderQwen(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  Builder out;
  const size_t n = messages.size();
  if (messages[0].role == "system") {
    out.add("<|im_start|>system\n" + messages[0].content + "<|im_end|>\n", false);
  }
  // The last user message that is not a wrapped tool response ("last query").
  size_t last_query = n - 1;
  for (size_t k = n; k-- > 0;) {
    const auto& m = messages[k];
    if (m.role == "user" &&
        !(startsWith(m.content, "<tool_response>") && endsWith(m.content, "</tool_response>"))) {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const auto& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      out.add("<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n", false);
      continue;
    }
    if (m.role != "assistant") continue;
    std::string content = m.content;
    std::string reasoning;
    if (m.reasoning_content) {
      reasoning = *m.reasoning_content;
    } else {
      const size_t close = content.find("</think>");
      if (close != std::string::npos) {
        // content.split('</think>')[-1].lstrip('\n') and
        // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
        const size_t last_close = content.rfind("</think>");
        std::string before = rstripNewlines(content.substr(0, close));
        const size_t open = before.rfind("<think>");
        if (open != std::string::npos) before = before.substr(open + 7);
        reasoning = lstripNewlines(before);
        content = lstripNewlines(content.substr(last_close + 8));
      }
    }
    const bool last = i + 1 == n;
    out.add("<|im_start|>assistant\n", false);
    if (i > last_query && (last || !reasoning.empty())) {
      std::string stripped = lstripNewlines(rstripNewlines(reasoning));
      const std::string block = "<think>\n" + stripped + "\n</think>\n\n";
      out.add(block, !stripped.empty());
      content = lstripNewlines(content);
    }
    out.add(content, true);
    out.add("<|im_end|>", true);
    out.add("\n", false);
  }
  if (add_generation_prompt) out.add("<|im_start|>assistant\n", false);
  return out.take();
}

// Meta-Llama-3-Instruct's chat_template.
RenderedChat renderLlama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  Builder out;
  out.add("<|begin_of_text|>", false);
  for (const auto& m : messages) {
    const bool assistant = m.role == "assistant";
    out.add("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n", false);
    out.add(pythonStrip(m.content), assistant);
    out.add("<|eot_id|>", assistant);
  }
  if (add_generation_prompt) out.add("<|start_header_id|>assistant<|end_header_id|>\n\n", false);
  return out.take();
}

}  // namespace

ChatTemplate parseChatTemplate(std::string_view name, const std::string& where) {
  if (name == "qwen") return ChatTemplate::kQwen;
  if (name == "llama3") return ChatTemplate::kLlama3;
  LOOM_INPUT_CHECK(false, where << ": chat template \"" << name << "\" is not known; expected "
                                << "qwen or llama3");
  return ChatTemplate::kQwen;
}

std::string_view chatTemplateName(ChatTemplate family) {
  return family == ChatTemplate::kQwen ? "qwen" : "llama3";
}

std::vector<ChatMessage> alpacaMessages(const std::string& system, const std::string& instruction,
                                        const std::string& input) {
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system, std::nullopt});
  messages.push_back(
      {"user", input.empty() ? instruction : instruction + "\n\n" + input, std::nullopt});
  return messages;
}

std::vector<ChatMessage> parseChatMessages(const nlohmann::json& messages,
                                           const std::string& where) {
  LOOM_INPUT_CHECK(messages.is_array(), where << ": \"messages\" must be an array of "
                                              << "{\"role\", \"content\"} objects");
  LOOM_INPUT_CHECK(!messages.empty(), where << ": \"messages\" is empty");
  std::vector<ChatMessage> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    LOOM_INPUT_CHECK(m.is_object(), where << ": messages[" << i << "] must be an object");
    LOOM_INPUT_CHECK(m.contains("role") && m.at("role").is_string(),
                     where << ": messages[" << i << "].role must be a string");
    LOOM_INPUT_CHECK(m.contains("content") && m.at("content").is_string(),
                     where << ": messages[" << i << "].content must be a string");
    ChatMessage msg;
    msg.role = m.at("role").get<std::string>();
    msg.content = m.at("content").get<std::string>();
    LOOM_INPUT_CHECK(msg.role == "system" || msg.role == "user" || msg.role == "assistant",
                     where << ": messages[" << i << "].role is \"" << msg.role
                           << "\"; expected system, user or assistant");
    if (m.contains("reasoning_content") && !m.at("reasoning_content").is_null()) {
      LOOM_INPUT_CHECK(m.at("reasoning_content").is_string(),
                       where << ": messages[" << i << "].reasoning_content must be a string");
      msg.reasoning_content = m.at("reasoning_content").get<std::string>();
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::string RenderedChat::text() const {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}

std::vector<std::pair<size_t, size_t>> RenderedChat::lossSpans() const {
  std::vector<std::pair<size_t, size_t>> spans;
  size_t pos = 0;
  for (const auto& s : segments) {
    if (s.loss) spans.emplace_back(pos, pos + s.text.size());
    pos += s.text.size();
  }
  return spans;
}

RenderedChat renderChat(ChatTemplate family, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  checkRoles(messages);
  return family == ChatTemplate::kQwen ? renderQwen(messages, add_generation_prompt)
                                       : renderLlama3(messages, add_generation_prompt);
}

TokenizedChat tokenizeChat(const Tokenizer& tokenizer, const RenderedChat& chat) {
  TokenizedChat out;
  std::vector<size_t> starts;
  tokenizer.encode(chat.text(), out.ids, &starts);
  const auto spans = chat.lossSpans();
  out.loss_mask.assign(out.ids.size(), 0);
  size_t span = 0;
  for (size_t i = 0; i < out.ids.size(); ++i) {
    while (span < spans.size() && spans[span].second <= starts[i]) ++span;
    if (span < spans.size() && starts[i] >= spans[span].first) out.loss_mask[i] = 1;
  }
  return out;
}

}  // namespace loom

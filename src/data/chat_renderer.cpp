// The model's own chat template (or a built-in one) -> ids and loss mask; the rules are in
// chat_renderer.hpp.

#include "loom/data/chat_renderer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <limits>
#include <string>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/sha256.hpp"
#include "loom/data/conversation.hpp"
#include "loom/data/jinja.hpp"
#include "loom/data/tokenizer.hpp"

namespace loom {

namespace {

using nlohmann::ordered_json;
using Spans = std::vector<std::pair<size_t, size_t>>;

// Replaces an assistant message's content to find where the content lies in the render:
// plain letters, so that no template trims, splits or escapes any of it.
constexpr const char* kSentinel = "LOOMSENTINEL7f3a";

size_t commonPrefix(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

size_t commonSuffix(const std::string& a, const std::string& b, size_t limit) {
  size_t i = 0;
  while (i < limit && a[a.size() - 1 - i] == b[b.size() - 1 - i]) ++i;
  return i;
}

// transformers' special_tokens_map: the named special tokens of tokenizer_config.json, as
// strings (an AddedToken object contributes its content).
ordered_json specialTokens(const nlohmann::json& config) {
  ordered_json out = ordered_json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    const auto it = config.find(key);
    if (it == config.end()) continue;
    if (it->is_string()) {
      out[key] = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") && it->at("content").is_string()) {
      out[key] = it->at("content").get<std::string>();
    }
  }
  return out;
}

// The chat template a tokenizer folder carries, with the file it came from; empty when none.
std::pair<std::string, std::string> ownTemplate(const std::filesystem::path& dir,
                                                const nlohmann::json& config) {
  const auto jinja_file = dir / "chat_template.jinja";
  if (std::filesystem::is_regular_file(jinja_file)) {
    return {readFileOrThrow(jinja_file, "chat template"), jinja_file.string()};
  }
  const auto where = (dir / "tokenizer_config.json").string() + " chat_template";
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return {};
  if (it->is_string()) return {it->get<std::string>(), where};
  LOOM_INPUT_CHECK(it->is_array(), where << ": expected a string or a list of {name, template}");
  for (const auto& named : *it) {
    if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
        named.at("template").is_string()) {
      return {named.at("template").get<std::string>(), where + "[default]"};
    }
  }
  LOOM_INPUT_CHECK(false, where << ": a list of templates without one named \"default\"");
  return {};
}

// The built-in family a tokenizer without a template belongs to, by its marker tokens.
std::optional<ChatTemplate> builtinFamily(const Tokenizer& tokenizer) {
  if (tokenizer.tokenToId("<|im_start|>")) return ChatTemplate::kQwen;
  if (tokenizer.tokenToId("<|start_header_id|>")) return ChatTemplate::kLlama3;
  return std::nullopt;
}

}  // namespace

TrainOn parseTrainOn(std::string_view name, const std::string& where) {
  if (name == "all-assistant") return TrainOn::kAllAssistant;
  if (name == "last-assistant") return TrainOn::kLastAssistant;
  if (name == "all") return TrainOn::kAll;
  LOOM_INPUT_CHECK(false, where << ": unknown value '" << name
                                << "'; expected all-assistant, last-assistant or all");
  return TrainOn::kAllAssistant;
}

std::string_view trainOnName(TrainOn train_on) {
  switch (train_on) {
    case TrainOn::kAllAssistant:
      return "all-assistant";
    case TrainOn::kLastAssistant:
      return "last-assistant";
    case TrainOn::kAll:
      return "all";
  }
  return "?";
}

struct ChatRenderer::Impl {
  std::optional<JinjaTemplate> jinja;
  ChatTemplate family = ChatTemplate::kQwen;  // when !jinja
  bool think_token = false;                   // the tokenizer has Qwen3's <think>
  ordered_json special_tokens = ordered_json::object();
  std::string description;
  std::string hash;
  bool reads_reasoning = false;

  ordered_json context(const ordered_json& messages, bool add_generation_prompt,
                       const ChatRenderOptions& o) const {
    ordered_json ctx = special_tokens;
    if (o.enable_thinking) ctx["enable_thinking"] = *o.enable_thinking;
    ctx["messages"] = messages;
    ctx["tools"] = nullptr;
    ctx["documents"] = nullptr;
    ctx["add_generation_prompt"] = add_generation_prompt;
    return ctx;
  }

  // Spans of the assistant messages `turns` by the prefix/marker rule (header comment).
  Spans contentSpans(const std::string& text, const ordered_json& messages,
                     const std::vector<size_t>& turns, const ChatRenderOptions& o) const {
    Spans spans;
    for (const size_t i : turns) {
      size_t start_gen = std::numeric_limits<size_t>::max();
      if (i > 0) {
        ordered_json head(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i));
        try {
          start_gen = commonPrefix(text, jinja->render(context(head, true, o)));
        } catch (const InputError&) {
          // A template may refuse a prefix (e.g. one that must end with a user turn); the
          // content's own start is used then.
        }
      }
      // The message's output (content and tool calls) replaced by the marker: the texts
      // differ exactly where that output lies. A template that needs the tool calls (e.g.
      // to pair them with the tool turns after) gets them back, and only content is marked.
      ordered_json marked = messages;
      marked[i]["content"] = kSentinel;
      marked[i].erase("tool_calls");
      std::string other;
      try {
        other = jinja->render(context(marked, false, o));
      } catch (const InputError&) {
        if (!messages[i].contains("tool_calls")) throw;
        marked[i]["tool_calls"] = messages[i]["tool_calls"];
        other = jinja->render(context(marked, false, o));
      }
      // The marker's place in `other` gives the output's start and, by the length of what
      // follows it, its end in `text`. Comparing the texts alone could run into the output
      // when it begins or ends like the marker (an answer ending in "a").
      size_t a = 0;
      size_t b = 0;
      const size_t at = other.find(kSentinel);
      const size_t marker = std::char_traits<char>::length(kSentinel);
      if (at != std::string::npos && other.rfind(kSentinel) == at &&
          other.size() - (at + marker) <= text.size() - at &&
          text.compare(0, at, other, 0, at) == 0 &&
          text.compare(text.size() - (other.size() - at - marker), std::string::npos, other,
                       at + marker, std::string::npos) == 0) {
        a = at;
        b = other.size() - (at + marker);
      } else {
        a = commonPrefix(text, other);
        b = commonSuffix(text, other, std::min(text.size(), other.size()) - a);
      }
      spans.emplace_back(std::min(start_gen, a), text.size() - b);
      // Turns come one after another; a span reaching into the next one means the template
      // rendered this message's output somewhere this rule cannot find.
      LOOM_INPUT_CHECK(spans.size() < 2 || spans[spans.size() - 2].second <= spans.back().first,
                       "cannot tell assistant messages apart in the rendering of "
                           << jinja->where() << " (messages[" << i
                           << "] overlaps the one before); --train-on last-assistant avoids "
                              "this");
    }
    return spans;
  }
};

ChatRenderer::ChatRenderer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatRenderer::ChatRenderer(ChatRenderer&&) noexcept = default;
ChatRenderer& ChatRenderer::operator=(ChatRenderer&&) noexcept = default;
ChatRenderer::ChatRenderer(const ChatRenderer& other)
    : impl_(std::make_unique<Impl>(*other.impl_)) {}
ChatRenderer::~ChatRenderer() = default;

ChatRenderer ChatRenderer::forTokenizer(const std::filesystem::path& dir,
                                        const Tokenizer& tokenizer, const std::string& choice,
                                        const std::string& flag) {
  auto impl = std::make_unique<Impl>();
  nlohmann::json config = nlohmann::json::object();
  const auto config_file = dir / "tokenizer_config.json";
  if (std::filesystem::is_regular_file(config_file)) {
    try {
      config = nlohmann::json::parse(readFileOrThrow(config_file, "tokenizer config"));
    } catch (const nlohmann::json::exception& e) {
      LOOM_INPUT_CHECK(false, config_file.string() << ": malformed JSON: " << e.what());
    }
  }
  impl->special_tokens = specialTokens(config);

  auto use_builtin = [&](ChatTemplate family) {
    const char* marker = family == ChatTemplate::kQwen ? "<|im_start|>" : "<|start_header_id|>";
    LOOM_INPUT_CHECK(tokenizer.tokenToId(marker),
                     flag << " " << chatTemplateName(family) << ": the tokenizer in "
                          << dir.string() << " has no " << marker
                          << " token; its chat template is another family's");
    impl->family = family;
    impl->description = "built-in " + std::string(chatTemplateName(family));
    impl->hash = sha256Hex(impl->description);
    impl->reads_reasoning = family == ChatTemplate::kQwen;
    impl->think_token = tokenizer.tokenToId("<think>").has_value();
  };
  auto use_jinja = [&](const std::string& source, const std::string& where) {
    impl->jinja = JinjaTemplate::parse(source, where);
    impl->description = "chat_template of " + where;
    impl->hash = sha256Hex(source);
    impl->reads_reasoning = source.find("reasoning_content") != std::string::npos ||
                            source.find("thinking") != std::string::npos;
  };

  if (choice == "qwen" || choice == "llama3") {
    use_builtin(parseChatTemplate(choice, flag));
  } else if (choice != "auto" && !choice.empty()) {
    const std::filesystem::path file(choice);
    LOOM_INPUT_CHECK(std::filesystem::is_regular_file(file),
                     flag << " " << choice
                          << ": no such template file (expected auto, qwen, llama3 or a Jinja "
                             "file)");
    use_jinja(readFileOrThrow(file, "chat template"), file.string());
  } else {
    const auto [source, where] = ownTemplate(dir, config);
    if (!source.empty()) {
      use_jinja(source, where);
    } else if (const auto family = builtinFamily(tokenizer)) {
      use_builtin(*family);
    } else {
      LOOM_INPUT_CHECK(false, "--tokenizer " << dir.string()
                                             << ": no chat template (neither chat_template.jinja "
                                                "nor tokenizer_config.json's chat_template) and "
                                                "no known family (<|im_start|>, "
                                                "<|start_header_id|>); pass "
                                             << flag << " FILE.jinja, or use --format template");
    }
  }
  return ChatRenderer(std::move(impl));
}

bool ChatRenderer::available(const std::filesystem::path& dir, const Tokenizer& tokenizer) {
  if (builtinFamily(tokenizer)) return true;
  if (std::filesystem::is_regular_file(dir / "chat_template.jinja")) return true;
  const auto config_file = dir / "tokenizer_config.json";
  if (!std::filesystem::is_regular_file(config_file)) return false;
  const auto config = nlohmann::json::parse(readFileOrThrow(config_file, "tokenizer config"),
                                            nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.contains("chat_template") &&
         !config.at("chat_template").is_null();
}

std::string ChatRenderer::render(const ordered_json& messages, bool add_generation_prompt,
                                 const ChatRenderOptions& options) const {
  if (impl_->jinja) {
    return impl_->jinja->render(impl_->context(messages, add_generation_prompt, options));
  }
  std::string text =
      renderChat(impl_->family, toChatMessages(messages, "chat"), add_generation_prompt).text();
  // Qwen3's template with enable_thinking=False: an empty think block opens the answer.
  if (add_generation_prompt && impl_->family == ChatTemplate::kQwen && impl_->think_token &&
      options.enable_thinking == false) {
    text += "<think>\n\n</think>\n\n";
  }
  return text;
}

ChatSample ChatRenderer::encode(const Tokenizer& tokenizer, const ordered_json& messages,
                                const ChatRenderOptions& options) const {
  std::vector<size_t> turns = assistantTurns(messages);
  LOOM_INPUT_CHECK(options.train_on != TrainOn::kLastAssistant || !turns.empty(),
                   "messages: no assistant turn, which --train-on last-assistant trains on");
  if (options.train_on == TrainOn::kLastAssistant) turns.erase(turns.begin(), turns.end() - 1);
  ChatSample out;

  if (!impl_->jinja) {
    RenderedChat chat = renderChat(impl_->family, toChatMessages(messages, "chat"), false);
    auto& segments = chat.segments;
    if (options.train_on == TrainOn::kAll) {
      for (auto& s : segments) s.loss = true;
    } else if (options.train_on == TrainOn::kLastAssistant) {
      // Turns are separated by headers (context), so the last loss segment is the last turn.
      const auto last = std::find_if(segments.rbegin(), segments.rend(),
                                     [](const ChatSegment& s) { return s.loss; });
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) it->loss = it == last;
    }
    TokenizedChat t = tokenizeChat(tokenizer, chat);
    out.text = chat.text();
    out.spans = chat.lossSpans();
    out.ids = std::move(t.ids);
    out.loss_mask = std::move(t.loss_mask);
    return out;
  }

  bool close_turns = false;
  if (options.train_on == TrainOn::kAll) {
    out.text = render(messages, false, options);
    out.spans.emplace_back(0, out.text.size());
  } else if (impl_->jinja->hasGeneration()) {
    out.text = impl_->jinja->render(impl_->context(messages, false, options), out.spans);
    if (options.train_on == TrainOn::kLastAssistant && !out.spans.empty()) {
      out.spans.erase(out.spans.begin(), out.spans.end() - 1);
    }
  } else {
    out.text = render(messages, false, options);
    out.spans = impl_->contentSpans(out.text, messages, turns, options);
    close_turns = true;
  }
  tokenizer.encode(out.text, out.ids, &out.starts);
  const size_t n = out.ids.size();
  auto token_end = [&](size_t k) { return k + 1 < n ? out.starts[k + 1] : out.text.size(); };
  if (close_turns) {
    // The special token that starts where the content ends closes the turn: a target.
    for (auto& [begin, end] : out.spans) {
      const auto it = std::lower_bound(out.starts.begin(), out.starts.end(), end);
      if (it != out.starts.end() && *it == end) {
        const auto k = static_cast<size_t>(it - out.starts.begin());
        if (tokenizer.isSpecial(out.ids[k])) end = token_end(k);
      }
    }
  }
  out.loss_mask.assign(n, 0);
  for (const auto& [begin, end] : out.spans) {
    if (begin >= end) continue;
    // Tokens overlapping [begin, end): from the one holding `begin` to the one before `end`.
    // A token inside text that normalization changed has no bytes of its own (the tokenizer
    // maps it to where the change starts, tokenizer.hpp): it counts where it starts.
    auto k = static_cast<size_t>(std::lower_bound(out.starts.begin(), out.starts.end(), begin) -
                                 out.starts.begin());
    if (k > 0 && token_end(k - 1) > begin) --k;  // the token that holds `begin`
    for (; k < n && out.starts[k] < end; ++k) {
      if (token_end(k) > begin || out.starts[k] >= begin) out.loss_mask[k] = 1;
    }
  }
  return out;
}

const std::string& ChatRenderer::description() const { return impl_->description; }
const std::string& ChatRenderer::hash() const { return impl_->hash; }
bool ChatRenderer::readsReasoning() const { return impl_->reads_reasoning; }
bool ChatRenderer::builtin() const { return !impl_->jinja; }

}  // namespace loom

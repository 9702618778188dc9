#pragma once
// A conversation -> the token ids a model is trained on and their loss mask, rendered with
// the model's own chat template so that the text is byte-identical to transformers'
// tokenizer.apply_chat_template(messages, tokenize=False, **kwargs) (data/jinja.hpp renders
// it), and the ids equal apply_chat_template(tokenize=True).
//
// Which template: `chat_template.jinja` in the tokenizer folder, else tokenizer_config.json's
// `chat_template` (a string, or a list of named templates of which "default" is used, as
// transformers does without tools). A folder without either falls back to the built-in
// Qwen / Llama 3 renderers (chat_template.hpp), chosen from the tokenizer's marker tokens;
// `--chat-template qwen|llama3` forces a built-in one, `--chat-template FILE` a template file.
//
// Where the loss goes (the assistant's output):
//   - a template with {% generation %} blocks marks it itself: the blocks' text, the spans that
//     transformers' return_assistant_tokens_mask reports;
//   - otherwise, for each trained assistant message i, the span runs
//       from where the conversation stops agreeing with messages[:i] rendered with the
//         generation prompt (what inference sends the model before it answers; e.g. Qwen3's
//         `<|im_start|>assistant\n`, plus the empty think block when thinking is off), or
//         from where the message's content starts when that comes first,
//       to where its content ends (found by rendering the conversation again with that
//         content replaced by a marker and comparing the two texts), plus the special token
//         that closes the turn when one follows at once (`<|im_end|>`, `<|eot_id|>`): the model
//         must learn to stop.
//   A token is a target when any of its bytes lies in a span (transformers' rule for
//   generation blocks). The built-in renderers keep their own segments (chat_template.hpp).
// `--train-on last-assistant` keeps only the last assistant message's span; `all` trains on
// every token (train-on-inputs).

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loom/data/chat_template.hpp"

namespace loom {

class Tokenizer;

enum class TrainOn { kAllAssistant, kLastAssistant, kAll };

/// "all-assistant|last-assistant|all"; InputError naming `where` otherwise.
TrainOn parseTrainOn(std::string_view name, const std::string& where);
std::string_view trainOnName(TrainOn train_on);

/// How a conversation is rendered for training.
struct ChatRenderOptions {
  /// Passed to the template as `enable_thinking` when set (Qwen3: off puts the empty think
  /// block in the generation prompt, so it is context, not target).
  std::optional<bool> enable_thinking;
  TrainOn train_on = TrainOn::kAllAssistant;
};

/// A rendered, tokenized conversation.
struct ChatSample {
  std::string text;                              ///< the template's text
  std::vector<std::pair<size_t, size_t>> spans;  ///< byte ranges of text that are targets
  std::vector<int32_t> ids;                      ///< tokens of text, no special tokens added
  std::vector<uint8_t> loss_mask;                ///< 1 = target, per id
  std::vector<size_t> starts;                    ///< byte offset of each id in text
};

class ChatRenderer {
 public:
  /// The template for a tokenizer folder (see above). `choice` is "auto" (own template, else
  /// built-in by marker tokens), "qwen" / "llama3" (built-in), or a path to a Jinja file.
  /// InputError naming the file and the construct for a template the renderer cannot
  /// parse, and when auto finds neither a template nor a known family. `flag` names the
  /// option in errors.
  static ChatRenderer forTokenizer(const std::filesystem::path& tokenizer_dir,
                                   const Tokenizer& tokenizer, const std::string& choice,
                                   const std::string& flag);

  /// True when forTokenizer(tokenizer_dir, tokenizer, "auto", ...) finds something to render
  /// with: a template of the folder's own, or a known family's tokens.
  static bool available(const std::filesystem::path& tokenizer_dir, const Tokenizer& tokenizer);

  /// The template's text for `messages` (a JSON array of message objects, see
  /// conversation.hpp). InputError (without a place: the caller adds the record's) on a
  /// template error such as raise_exception("Conversation roles must alternate").
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const ChatRenderOptions& options) const;

  /// Renders and tokenizes `messages` with the loss mask (see above). For last-assistant a
  /// conversation needs an assistant message (InputError otherwise).
  ChatSample encode(const Tokenizer& tokenizer, const nlohmann::ordered_json& messages,
                    const ChatRenderOptions& options) const;

  /// "chat_template of <file>" or "built-in qwen"; recorded in datasets and the data report.
  const std::string& description() const;
  /// SHA-256 (hex) of the template source; for a built-in renderer, of its name.
  const std::string& hash() const;
  /// True when the template reads a message's reasoning trace (reasoning_content/thinking).
  bool readsReasoning() const;
  /// True when this is a built-in renderer (no Jinja template).
  bool builtin() const;

  ChatRenderer(ChatRenderer&&) noexcept;
  ChatRenderer& operator=(ChatRenderer&&) noexcept;
  ChatRenderer(const ChatRenderer&);
  ~ChatRenderer();

 private:
  struct Impl;
  explicit ChatRenderer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom

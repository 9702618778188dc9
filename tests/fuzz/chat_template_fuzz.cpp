// The chat-template renderer: a `messages` array (JSON, as a chat record holds it) is read
// with parseChatMessages, rendered with both templates, with and without the generation
// prompt, and tokenized with a small Qwen-shaped tokenizer (fixtures/qwen_tokenizer).
// Checked on success: the segments' loss spans are ordered and lie in the text; tokenizeChat
// gives the ids of encoding the whole text, and a loss mask of the same length.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "fuzz_support.hpp"
#include "loom/data/chat_template.hpp"
#include "loom/data/tokenizer.hpp"

namespace {

const loom::Tokenizer& tokenizer() {
  static const loom::Tokenizer tok =
      loom::Tokenizer::fromDir(loom::fuzz::fixture("qwen_tokenizer"));
  return tok;
}

void check(const loom::RenderedChat& chat) {
  const std::string text = chat.text();
  size_t previous_end = 0;
  for (const auto& [begin, end] : chat.lossSpans()) {
    LOOM_FUZZ_EXPECT(previous_end <= begin && begin < end && end <= text.size(),
                     "loss span [" << begin << ", " << end << ") after " << previous_end
                                   << " in a text of " << text.size());
    previous_end = end;
  }
  const loom::TokenizedChat t = loom::tokenizeChat(tokenizer(), chat);
  LOOM_FUZZ_EXPECT(t.ids.size() == t.loss_mask.size(),
                   t.ids.size() << " ids, " << t.loss_mask.size() << " mask values");
  LOOM_FUZZ_EXPECT(t.ids == tokenizer().encode(text), "tokenizeChat differs from encode(text)");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizer();  // a broken fixture fails here, not as a finding
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json messages =
      nlohmann::json::parse(data, data + size, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (messages.is_discarded()) return 0;
  loom::fuzz::expectLoomErrorsOnly([&] {
    const auto parsed = loom::parseChatMessages(messages, "fuzz.jsonl:1");
    for (auto family : {loom::ChatTemplate::kQwen, loom::ChatTemplate::kLlama3}) {
      for (bool prompt : {false, true}) check(loom::renderChat(family, parsed, prompt));
    }
  });
  return 0;
}

// Unit tests of the native chat templates: exact strings for small conversations, loss
// segments, and refusal of malformed messages.

#include "loom/data/chat_template.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "loom/core/error.hpp"

namespace loom {
namespace {

using nlohmann::json;

std::vector<ChatMessage> simpleChat() {
  return {{"system", "Be brief.", std::nullopt},
          {"user", "Hi", std::nullopt},
          {"assistant", "Hello!", std::nullopt},
          {"user", "Bye", std::nullopt},
          {"assistant", "Bye!", std::nullopt}};
}

// The loss segments' texts, in order.
std::vector<std::string> lossTexts(const RenderedChat& chat) {
  std::vector<std::string> out;
  for (const auto& s : chat.segments) {
    if (s.loss) out.push_back(s.text);
  }
  return out;
}

TEST(ChatTemplate, QwenMultiTurn) {
  const auto chat = renderChat(ChatTemplate::kQwen, simpleChat(), false);
  EXPECT_EQ(chat.text(),
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nBye!<|im_end|>\n");
  EXPECT_EQ(lossTexts(chat), (std::vector<std::string>{"Hello!<|im_end|>", "Bye!<|im_end|>"}));
  const auto spans = chat.lossSpans();
  ASSERT_EQ(spans.size(), 2u);
  const std::string text = chat.text();
  EXPECT_EQ(text.substr(spans[0].first, spans[0].second - spans[0].first), "Hello!<|im_end|>");
}

TEST(ChatTemplate, QwenReasoningIsATargetOnlyAfterTheLastQuery) {
  std::vector<ChatMessage> m = {{"user", "Q", std::nullopt},
                                {"assistant", "<think>\nold\n</think>\n\nA", std::nullopt},
                                {"user", "Q2", std::nullopt},
                                {"assistant", "A2", std::string("why")}};
  const auto chat = renderChat(ChatTemplate::kQwen, m, false);
  EXPECT_EQ(chat.text(),
            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
            "<|im_start|>user\nQ2<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nwhy\n</think>\n\nA2<|im_end|>\n");
  EXPECT_EQ(lossTexts(chat),
            (std::vector<std::string>{"A<|im_end|>", "<think>\nwhy\n</think>\n\nA2<|im_end|>"}));
}

TEST(ChatTemplate, QwenGenerationPrompt) {
  const auto chat = renderChat(ChatTemplate::kQwen, {{"user", "Hi", std::nullopt}}, true);
  EXPECT_EQ(chat.text(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_TRUE(chat.lossSpans().empty());
}

TEST(ChatTemplate, Llama3TrimsContent) {
  std::vector<ChatMessage> m = {{"system", " sys\n", std::nullopt},
                                {"user", "\tHi ", std::nullopt},
                                {"assistant", "\n Hello! \n", std::nullopt}};
  const auto chat = renderChat(ChatTemplate::kLlama3, m, true);
  EXPECT_EQ(chat.text(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(lossTexts(chat), (std::vector<std::string>{"Hello!<|eot_id|>"}));
}

TEST(ChatTemplate, ParsesMessagesAndNamesBadOnes) {
  const auto ok = parseChatMessages(json::parse(R"([{"role": "user", "content": "a"},
                      {"role": "assistant", "content": "b", "reasoning_content": "r"}])"),
                                    "data.jsonl:3");
  ASSERT_EQ(ok.size(), 2u);
  EXPECT_EQ(ok[1].reasoning_content.value_or(""), "r");

  auto errorOf = [](const std::string& text) -> std::string {
    try {
      parseChatMessages(json::parse(text), "data.jsonl:7");
    } catch (const InputError& e) {
      return e.what();
    }
    return "(no InputError)";
  };
  EXPECT_NE(errorOf(R"([{"role": "tool", "content": "x"}])").find("messages[0].role is \"tool\""),
            std::string::npos);
  EXPECT_NE(errorOf(R"([{"role": "user"}])").find("data.jsonl:7: messages[0].content"),
            std::string::npos);
  EXPECT_NE(errorOf(R"([{"role": "user", "content": null}])").find("content must be a string"),
            std::string::npos);
  EXPECT_NE(errorOf("[]").find("is empty"), std::string::npos);
  EXPECT_NE(errorOf(R"({"role": "user"})").find("must be an array"), std::string::npos);
  EXPECT_THROW(renderChat(ChatTemplate::kQwen, {}, false), InputError);
  EXPECT_THROW(parseChatTemplate("chatml", "--chat-template"), InputError);
  EXPECT_EQ(parseChatTemplate("llama3", "--chat-template"), ChatTemplate::kLlama3);
  EXPECT_EQ(chatTemplateName(ChatTemplate::kQwen), "qwen");
}

}  // namespace
}  // namespace loom

// Record formats -> messages (conversation.hpp): ShareGPT equals the same conversation in
// messages form, alpaca with remapped fields and a reasoning trace, transformers'
// normalisation of chat messages, and the errors that name the field.

#include "loom/data/conversation.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using nlohmann::ordered_json;

using testing::inputErrorOf;

TEST(Conversation, ShareGptIsTheSameConversationAsMessages) {
  const auto sharegpt = ordered_json::parse(R"({"system": "Be brief.", "conversations": [
      {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
      {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]})");
  const auto chat = ordered_json::parse(R"({"messages": [
      {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2?"},
      {"role": "assistant", "content": "4"}]})");
  EXPECT_EQ(sharegptConversation(sharegpt, {}, "s:1"), chatConversation(chat, {}, "c:1"));
}

TEST(Conversation, ShareGptUnknownSpeakerNamesTheField) {
  const auto record = ordered_json::parse(
      R"({"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "x"}]})");
  const std::string e = inputErrorOf([&] { sharegptConversation(record, {}, "data.jsonl:7"); });
  EXPECT_NE(e.find("data.jsonl:7: conversations[1].from is \"bot\""), std::string::npos) << e;
}

TEST(Conversation, AlpacaWithRemappedFieldsCarriesTheReasoningTrace) {
  // The medical-o1 recipe: {"Question", "Complex_CoT", "Response"}.
  const RecordFields fields =
      parseRecordFields("instruction=Question,output=Response,reasoning=Complex_CoT", "--fields");
  const auto record = ordered_json::parse(
      R"({"Question": "Fever and rash?", "Complex_CoT": "Consider measles.", "Response": "Measles."})");
  const auto messages = alpacaConversation(record, fields, "m:1");
  const auto want = ordered_json::parse(R"([
      {"role": "user", "content": "Fever and rash?"},
      {"thinking": "Consider measles.", "role": "assistant", "content": "Measles.",
       "reasoning_content": "Consider measles."}])");
  EXPECT_EQ(messages, want);
  const auto missing = ordered_json::parse(R"({"Question": "q", "Response": "r"})");
  const std::string e = inputErrorOf([&] { alpacaConversation(missing, fields, "m:2"); });
  EXPECT_NE(e.find("m:2: missing field 'Complex_CoT'"), std::string::npos) << e;
  // instruction + input, and a system field.
  const auto plain = ordered_json::parse(
      R"({"instruction": "Sum", "input": "1 2", "output": "3", "system": "S"})");
  EXPECT_EQ(alpacaConversation(plain, {}, "a:1"), ordered_json::parse(R"([
      {"role": "system", "content": "S"}, {"role": "user", "content": "Sum\n\n1 2"},
      {"role": "assistant", "content": "3"}])"));
}

TEST(Conversation, ChatMessagesAreNormalisedAsTransformersDoes) {
  // Null keys dropped; a reasoning trace offered as thinking and reasoning_content; tool turns
  // and tool calls passed through; key order kept (a template's tojson shows it).
  const auto record = ordered_json::parse(R"({"messages": [
      {"role": "user", "content": "Weather?", "name": null},
      {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
        "function": {"name": "get", "arguments": {"z": 1, "a": 2}}}]},
      {"role": "tool", "content": "{\"t\": 21}"},
      {"role": "assistant", "reasoning": "It said 21.", "content": "21 degrees."}]})");
  const auto messages = chatConversation(record, {}, "c:3");
  EXPECT_EQ(messages[0], ordered_json::parse(R"({"role": "user", "content": "Weather?"})"));
  EXPECT_FALSE(messages[1].contains("content"));
  EXPECT_EQ(messages[1]["tool_calls"][0]["function"]["arguments"].dump(), R"({"z":1,"a":2})");
  EXPECT_EQ(messages[2]["role"], "tool");
  EXPECT_EQ(messages[3].dump(), ordered_json::parse(R"({"thinking": "It said 21.",
      "role": "assistant", "reasoning": "It said 21.", "content": "21 degrees.",
      "reasoning_content": "It said 21."})")
                                    .dump());
  EXPECT_EQ(assistantTurns(messages), (std::vector<size_t>{1, 3}));
  EXPECT_TRUE(hasAnswer(messages));
}

TEST(Conversation, ChatErrorsNameTheMessageAndField) {
  auto error = [](const char* text) {
    return inputErrorOf([&] { chatConversation(ordered_json::parse(text), {}, "d.jsonl:4"); });
  };
  EXPECT_NE(error(R"({"messages": [{"role": "robot", "content": "x"}]})")
                .find("d.jsonl:4: messages[0].role is \"robot\""),
            std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user"}]})").find("messages[0].content is missing"),
            std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})")
                .find("content parts are not supported"),
            std::string::npos);
  EXPECT_NE(error(R"({"messages": []})").find("field 'messages' is empty"), std::string::npos);
  EXPECT_NE(error(R"({"text": "x"})").find("missing field 'messages'"), std::string::npos);
}

TEST(Conversation, DefaultSystemOnlyWhenThereIsNone) {
  auto messages = ordered_json::parse(R"([{"role": "user", "content": "Hi"}])");
  addDefaultSystem(messages, "You are kind.");
  EXPECT_EQ(messages[0], ordered_json::parse(R"({"role": "system", "content": "You are kind."})"));
  addDefaultSystem(messages, "Another.");
  EXPECT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0]["content"], "You are kind.");
}

TEST(Conversation, FieldsSpecErrors) {
  EXPECT_NE(inputErrorOf([] {
              parseRecordFields("answer=Response", "--fields");
            }).find("unknown key \"answer\""),
            std::string::npos);
  EXPECT_NE(inputErrorOf([] { parseRecordFields("output", "--fields"); }).find("is not KEY=NAME"),
            std::string::npos);
  EXPECT_EQ(parseRecordFields("", "--fields").output, "output");
}

}  // namespace
}  // namespace loom

// Prompts files: each shape read with its reference answer, bad lines named by file and line;
// generation prompts rendered as transformers renders them (Qwen3 with enable_thinking on and
// off, when the real Qwen3 tokenizer is at LOOM_QWEN3_TOKENIZER).

#include "loom/data/prompts.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "loom/core/error.hpp"
#include "loom/data/tokenizer.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using testing::TempDir;

using testing::inputErrorOf;

TEST(PromptsFile, ReadsEachShapeWithItsReference) {
  TempDir tmp;
  const auto file = tmp.write(
      "p.jsonl",
      "{\"prompt\": \"Hi\", \"reference\": \"Hello\"}\n"
      "\n"
      "{\"prompt\": \"No answer here\"}\n"
      "{\"instruction\": \"Add 2 and 3.\", \"input\": \"quick\", \"output\": \"5\", "
      "\"system\": \"Be brief.\"}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}, {\"role\": \"assistant\", "
      "\"content\": \"A\"}]}\n"
      "{\"prompt\": \"With answer key\", \"answer\": \"42\"}\n");
  const auto records = readPromptsFile(file);
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[0].messages.size(), 1u);
  EXPECT_EQ(records[0].messages[0].content, "Hi");
  EXPECT_EQ(records[0].reference, "Hello");
  EXPECT_EQ(records[0].where, file.string() + ":1");
  EXPECT_FALSE(records[1].reference.has_value());
  EXPECT_EQ(records[1].where, file.string() + ":3");  // the blank line counts
  ASSERT_EQ(records[2].messages.size(), 2u);
  EXPECT_EQ(records[2].messages[0].role, "system");
  EXPECT_EQ(records[2].messages[1].content, "Add 2 and 3.\n\nquick");
  EXPECT_EQ(records[2].reference, "5");
  ASSERT_EQ(records[3].messages.size(), 1u);  // the final assistant turn is the reference
  EXPECT_EQ(records[3].reference, "A");
  EXPECT_EQ(records[4].reference, "42");
}

TEST(PromptsFile, BadLinesAreNamedByFileAndLine) {
  TempDir tmp;
  struct Case {
    std::string text;
    std::string expected;
  } cases[] = {
      {"{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n", "p.jsonl:2: field 'prompt' must be a string"},
      {"{\"prompt\": \"ok\"}\nnot json\n", "p.jsonl:2: malformed JSON"},
      {"[1, 2]\n", "p.jsonl:1: expected a JSON object"},
      {"{\"question\": \"?\"}\n", "p.jsonl:1: missing field 'prompt'"},
      {"{\"messages\": [{\"role\": \"assistant\", \"content\": \"A\"}]}\n",
       "p.jsonl:1: nothing to answer"},
      {"\n\n", "no prompts (the file is empty)"},
      {"{\"prompt\": \"ok\", \"reference\": 5}\n", "p.jsonl:1: field 'reference' must be a string"},
  };
  for (const auto& c : cases) {
    const auto file = tmp.write("p.jsonl", c.text);
    const std::string message = inputErrorOf([&] { readPromptsFile(file); });
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.text << " -> " << message;
  }
}

TEST(PromptRendering, TemplateLessStyleTakesPlainPromptsOnly) {
  PromptStyle none;
  PromptRecord plain{{{"user", "as it is", std::nullopt}}, std::nullopt, "--prompt 1"};
  EXPECT_EQ(renderPrompt(none, plain), "as it is");
  PromptRecord chat{
      {{"system", "s", std::nullopt}, {"user", "u", std::nullopt}}, std::nullopt, "p.jsonl:4"};
  EXPECT_NE(inputErrorOf([&] { renderPrompt(none, chat); }).find("p.jsonl:4: --chat-template none"),
            std::string::npos);
}

TEST(PromptRendering, Qwen3ThinkingOnAndOffEqualTransformers) {
  const char* dir = std::getenv("LOOM_QWEN3_TOKENIZER");
  if (!dir || !std::filesystem::exists(std::filesystem::path(dir) / "tokenizer_config.json")) {
    GTEST_SKIP() << "no Qwen3 tokenizer at LOOM_QWEN3_TOKENIZER";
  }
  TempDir tmp;
  const nlohmann::json conversations = {
      {{{"role", "user"}, {"content", "What is 2+2?"}}},
      {{{"role", "system"}, {"content", "Answer in French."}},
       {{"role", "user"}, {"content", "Bonjour, ça va ?"}}},
      {{{"role", "user"}, {"content", "Q1"}},
       {{"role", "assistant"}, {"content", "A1"}},
       {{"role", "user"}, {"content", "Q2"}}},
  };
  const auto in = tmp.write("in.json", conversations.dump());
  const auto out = tmp.path() / "out.json";
  const auto r = testing::runPythonScript("prompts_reference.py", {dir, in.string(), out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto expected = nlohmann::json::parse(testing::readFile(out));
  const Tokenizer tokenizer = Tokenizer::fromDir(dir);
  for (size_t i = 0; i < conversations.size(); ++i) {
    PromptRecord record;
    record.messages = parseChatMessages(conversations[i], "case");
    for (const std::string thinking : {"on", "off"}) {
      const PromptStyle style =
          promptStyleFor(tokenizer, "auto", thinking == "on", "--chat-template");
      ASSERT_TRUE(style.renderer && !style.renderer->builtin()) << "Qwen3's own template";
      EXPECT_EQ(renderPrompt(style, record), expected[i][thinking].get<std::string>())
          << "conversation " << i << ", thinking " << thinking;
    }
  }
}

}  // namespace
}  // namespace loom

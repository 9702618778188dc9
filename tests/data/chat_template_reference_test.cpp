// Chat renderings equal transformers' apply_chat_template (Qwen3's own template) and
// Jinja2's rendering of the Llama 3 template; tokenizeChat's ids equal the library's ids
// of that text and its loss mask covers exactly the assistant segments.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "loom/data/chat_template.hpp"
#include "loom/data/tokenizer.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using nlohmann::json;
using testing::runPythonScript;
using testing::TempDir;

std::string qwen3Dir() {
  const char* dir = std::getenv("LOOM_QWEN3_TOKENIZER");
  if (dir && std::filesystem::exists(std::filesystem::path(dir) / "tokenizer_config.json")) {
    return dir;
  }
  return {};
}

json referenceCases(const TempDir& tmp, const std::string& qwen_dir) {
  const auto out = tmp.path() / "chat.json";
  const auto r =
      runPythonScript("chat_reference.py", {qwen_dir.empty() ? "-" : qwen_dir, out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return json::parse(testing::readFile(out));
}

TEST(ChatTemplateParity, Llama3MatchesJinja) {
  TempDir tmp;
  const json cases = referenceCases(tmp, "");
  size_t n = 0;
  for (const auto& c : cases.at("cases")) {
    const auto messages = parseChatMessages(c.at("messages"), "case");
    const auto chat = renderChat(ChatTemplate::kLlama3, messages, c.at("add_generation_prompt"));
    EXPECT_EQ(chat.text(), c.at("llama3").get<std::string>()) << c.at("messages").dump();
    ++n;
  }
  std::cout << "[chat] llama3: " << n << " conversations compared\n";
  EXPECT_GE(n, 20u);
}

TEST(ChatTemplateParity, QwenMatchesTransformersAndMasksAssistantTurns) {
  const std::string dir = qwen3Dir();
  if (dir.empty()) {
    GTEST_SKIP() << "no Qwen3 tokenizer at LOOM_QWEN3_TOKENIZER; Qwen3 chat template not checked";
  }
  TempDir tmp;
  const json cases = referenceCases(tmp, dir);
  const Tokenizer tok = Tokenizer::fromDir(dir);
  size_t n = 0, loss_tokens = 0;
  for (const auto& c : cases.at("cases")) {
    const auto messages = parseChatMessages(c.at("messages"), "case");
    const auto chat = renderChat(ChatTemplate::kQwen, messages, c.at("add_generation_prompt"));
    const std::string where = c.at("messages").dump();
    EXPECT_EQ(chat.text(), c.at("qwen").get<std::string>()) << where;
    const auto tokenized = tokenizeChat(tok, chat);
    EXPECT_EQ(tokenized.ids, c.at("qwen_ids").get<std::vector<int32_t>>()) << where;
    // Each run of target tokens decodes to one loss segment, in order.
    std::vector<std::string> runs;
    std::vector<int32_t> run;
    for (size_t i = 0; i <= tokenized.ids.size(); ++i) {
      if (i < tokenized.ids.size() && tokenized.loss_mask[i]) {
        run.push_back(tokenized.ids[i]);
        ++loss_tokens;
      } else if (!run.empty()) {
        runs.push_back(tok.decode(run));
        run.clear();
      }
    }
    std::vector<std::string> expected;
    for (const auto& s : chat.segments) {
      if (s.loss) expected.push_back(s.text);
    }
    EXPECT_EQ(runs, expected) << where;
    ++n;
  }
  std::cout << "[chat] qwen: " << n << " conversations compared, " << loss_tokens
            << " loss tokens\n";
  EXPECT_GE(n, 20u);
}

}  // namespace
}  // namespace loom

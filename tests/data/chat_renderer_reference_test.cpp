// Conversations rendered with the model's own chat template give exactly transformers' ids,
// and the loss mask covers exactly the assistant spans (tests/python/chat_render_reference.py
// computes both: apply_chat_template(tokenize=True), and the spans by the rule in
// chat_renderer.hpp, or transformers' return_assistant_tokens_mask for a template with
// {% generation %} blocks). Every tokenizer folder in ../shared/tokenizers takes part.
// Exact equality: ids and masks are integers, and the text must be byte-identical.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "loom/data/chat_renderer.hpp"
#include "loom/data/conversation.hpp"
#include "loom/data/tokenizer.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using nlohmann::ordered_json;
using testing::TempDir;

TEST(ChatRendererReference, IdsAndMasksEqualTransformers) {
  const auto root = testing::sharedTokenizersDir();
  if (root.empty() || !std::filesystem::is_directory(root)) {
    GTEST_SKIP() << "no real tokenizers at " << root << "; chat template parity not checked";
  }
  TempDir tmp("loom-chat-render");
  const auto out = tmp.path() / "cases.json";
  const auto r = testing::runPythonScript(
      "chat_render_reference.py", {"--out", out.string(), "--tokenizers-root", root.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const ordered_json doc = ordered_json::parse(testing::readFile(out));
  for (const auto& s : doc["skipped"]) {
    std::cout << "skipped by transformers: " << s.dump() << "\n";
  }
  ASSERT_GE(doc["cases"].size(), 100u);

  std::map<std::string, std::unique_ptr<Tokenizer>> tokenizers;
  std::map<std::string, std::set<std::string>> conversations;
  size_t compared = 0;
  size_t hf_masks = 0;
  for (const auto& c : doc["cases"]) {
    const std::string folder = c["tokenizer"];
    auto& tok = tokenizers[folder];
    if (!tok) tok = std::make_unique<Tokenizer>(Tokenizer::fromDir(folder));
    std::string choice = "auto";
    std::string label = folder.substr(folder.find_last_of('/') + 1);
    if (!c["template"].is_null()) {
      choice = tmp.write("generation.jinja", c["template"].get<std::string>()).string();
      label += "+generation-template";
    }
    const ChatRenderer renderer =
        ChatRenderer::forTokenizer(folder, *tok, choice, "--chat-template");
    ASSERT_FALSE(renderer.builtin()) << folder << " has its own template";
    ChatRenderOptions options;
    options.train_on = parseTrainOn(c["train_on"].get<std::string>(), "train_on");
    if (c["kwargs"].contains("enable_thinking")) {
      options.enable_thinking = c["kwargs"]["enable_thinking"].get<bool>();
    }
    // As prepare reads a chat record: validated and normalised first.
    const ordered_json messages =
        chatConversation({{"messages", c["messages"]}}, RecordFields{}, c["name"]);
    const std::string what = label + " " + c["name"].get<std::string>() + " " + c["kwargs"].dump() +
                             " " + c["train_on"].get<std::string>();
    const ChatSample sample = renderer.encode(*tok, messages, options);
    EXPECT_EQ(sample.text, c["text"].get<std::string>()) << what;
    EXPECT_EQ(sample.ids, c["ids"].get<std::vector<int32_t>>()) << what;
    std::vector<std::pair<size_t, size_t>> spans;
    for (const auto& span : c["spans"]) spans.emplace_back(span[0], span[1]);
    EXPECT_EQ(sample.spans, spans) << what;
    const auto mask = c["mask"].get<std::vector<uint8_t>>();
    EXPECT_EQ(sample.loss_mask, mask) << what;
    if (!c["hf_assistant_masks"].is_null() && c["train_on"] == "all-assistant") {
      EXPECT_EQ(sample.loss_mask, c["hf_assistant_masks"].get<std::vector<uint8_t>>()) << what;
      ++hf_masks;
    }
    conversations[label].insert(c["name"].get<std::string>());
    ++compared;
  }
  for (const auto& [label, names] : conversations) {
    std::cout << label << ": " << names.size() << " conversations:";
    for (const auto& n : names) std::cout << " " << n;
    std::cout << "\n";
  }
  std::cout << compared << " cases compared, " << hf_masks
            << " against transformers' return_assistant_tokens_mask\n";
  EXPECT_GE(tokenizers.size(), 3u) << "qwen3, qwen2_5 and llama3_1 expected in ../shared";
  EXPECT_GT(hf_masks, 0u);
}

}  // namespace
}  // namespace loom

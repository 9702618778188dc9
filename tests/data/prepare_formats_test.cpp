// `trainer prepare` end to end on what users bring (issue 14): the tokenizer folder's own chat
// template, ShareGPT against the same conversations as messages, --train-on, --system,
// --fields with a reasoning trace (on the real Qwen3 tokenizer), weighted mixing, and the data
// report against the files it describes.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/data/data_report.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/prepare.hpp"
#include "loom/data/tokenizer.hpp"
#include "support/test_support.hpp"
#include "support/test_tokenizer.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

// ChatML as Qwen2.5 renders it, without tools or a default system prompt.
constexpr const char* kChatMl =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

struct Contents {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<uint8_t>> masks;
  int64_t tokens_total = 0;
  int64_t loss_tokens = 0;
  int64_t max_length = 0;
};

Contents readAll(const fs::path& path) {
  const Hdf5Dataset ds(path);
  Contents c;
  for (int64_t i = 0; i < ds.numSamples(); ++i) {
    Sample s = ds.readSample(i);
    c.tokens_total += static_cast<int64_t>(s.tokens.size());
    c.max_length = std::max<int64_t>(c.max_length, static_cast<int64_t>(s.tokens.size()));
    for (uint8_t m : s.loss_mask) c.loss_tokens += m;
    c.tokens.push_back(std::move(s.tokens));
    c.masks.push_back(std::move(s.loss_mask));
  }
  return c;
}

std::string jsonl(const std::vector<json>& records) {
  std::string out;
  for (const auto& r : records) out += r.dump() + "\n";
  return out;
}

json conversation(int i) {
  return json::array({{{"role", "user"}, {"content", "Q" + std::to_string(i)}},
                      {{"role", "assistant"}, {"content", "first " + std::to_string(i)}},
                      {{"role", "user"}, {"content", "again"}},
                      {{"role", "assistant"}, {"content", "second " + std::to_string(i)}}});
}

class PrepareFormats : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::writeTokenizer(tok_dir());
    tmp_.write("tok/chat_template.jinja", kChatMl);
  }
  fs::path tok_dir() const { return tmp_.path() / "tok"; }

  PrepareOptions options(PrepareFormat format, std::vector<fs::path> inputs,
                         const std::string& out = "out.h5") const {
    PrepareOptions o;
    o.tokenizer_dir = tok_dir();
    o.inputs = std::move(inputs);
    o.format = format;
    o.output = tmp_.path() / out;
    o.progress = false;
    o.threads = 2;
    o.seq_len = 256;
    return o;
  }

  TempDir tmp_{"loom-prepare-formats"};
};

TEST_F(PrepareFormats, OwnTemplateRendersAndIsRecorded) {
  std::vector<json> records;
  for (int i = 0; i < 5; ++i) records.push_back({{"messages", conversation(i)}});
  const auto in = tmp_.write("chat.jsonl", jsonl(records));
  const PrepareSummary s = runPrepare(options(PrepareFormat::kChat, {in}));
  const Tokenizer tok = Tokenizer::fromDir(tok_dir());
  const Contents c = readAll(tmp_.path() / "out.h5");
  ASSERT_EQ(c.tokens.size(), 5u);
  EXPECT_EQ(tok.decode(c.tokens[0]),
            "<|im_start|>user\nQ0<|im_end|>\n<|im_start|>assistant\nfirst 0<|im_end|>\n"
            "<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\nsecond 0<|im_end|>\n");
  EXPECT_EQ(testing::decodeMasked(tok, c.tokens[0], c.masks[0], 1),
            "first 0<|im_end|>second 0<|im_end|>");
  const json settings = json::parse(s.template_description);
  EXPECT_EQ(settings["chat_template"],
            "chat_template of " + (tok_dir() / "chat_template.jinja").string());
  EXPECT_EQ(settings["template"]["sha256"].get<std::string>().size(), 64u);
}

TEST_F(PrepareFormats, ShareGptGivesTheSameFileAsTheSameConversationsInMessagesForm) {
  std::vector<json> chat;
  std::vector<json> sharegpt;
  for (int i = 0; i < 12; ++i) {
    json turns = json::array();
    for (const auto& m : conversation(i)) {
      turns.push_back({{"from", m["role"] == "user" ? "human" : "gpt"}, {"value", m["content"]}});
    }
    json c = conversation(i);
    json s = {{"conversations", turns}};
    if (i % 3 == 0) {
      c.insert(c.begin(), json{{"role", "system"}, {"content", "Be brief."}});
      s["system"] = "Be brief.";
    }
    chat.push_back({{"messages", c}});
    sharegpt.push_back(s);
  }
  runPrepare(options(PrepareFormat::kChat, {tmp_.write("c.jsonl", jsonl(chat))}, "chat.h5"));
  runPrepare(
      options(PrepareFormat::kShareGpt, {tmp_.write("s.jsonl", jsonl(sharegpt))}, "sharegpt.h5"));
  const Contents a = readAll(tmp_.path() / "chat.h5");
  const Contents b = readAll(tmp_.path() / "sharegpt.h5");
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.masks, b.masks);
  EXPECT_EQ(a.tokens.size(), 12u);
}

TEST_F(PrepareFormats, TrainOnChoosesWhichTurnsAreTargets) {
  const auto in = tmp_.write("chat.jsonl", jsonl({{{"messages", conversation(7)}}}));
  const Tokenizer tok = Tokenizer::fromDir(tok_dir());
  auto run = [&](TrainOn train_on) {
    PrepareOptions o = options(PrepareFormat::kChat, {in});
    o.train_on = train_on;
    runPrepare(o);
    return readAll(o.output);
  };
  const Contents every = run(TrainOn::kAllAssistant);
  EXPECT_EQ(testing::decodeMasked(tok, every.tokens[0], every.masks[0], 1),
            "first 7<|im_end|>second 7<|im_end|>");
  const Contents last = run(TrainOn::kLastAssistant);
  EXPECT_EQ(last.tokens, every.tokens);
  EXPECT_EQ(testing::decodeMasked(tok, last.tokens[0], last.masks[0], 1), "second 7<|im_end|>");
  const Contents all = run(TrainOn::kAll);
  // Everything is a target but the first token, which never is (hdf5_dataset.hpp).
  EXPECT_EQ(std::count(all.masks[0].begin(), all.masks[0].end(), 0), 1);
  EXPECT_EQ(all.masks[0][0], 0);
}

TEST_F(PrepareFormats, DefaultSystemPromptOnlyWhereTheRecordHasNone) {
  const auto in = tmp_.write(
      "a.jsonl", jsonl({{{"instruction", "Hi"}, {"output", "Hello"}},
                        {{"instruction", "Hi"}, {"output", "Hello"}, {"system", "Own."}}}));
  PrepareOptions o = options(PrepareFormat::kAlpaca, {in});
  o.system_prompt = "Be kind.";
  runPrepare(o);
  const Tokenizer tok = Tokenizer::fromDir(tok_dir());
  const Contents c = readAll(o.output);
  ASSERT_EQ(c.tokens.size(), 2u);
  EXPECT_EQ(tok.decode(c.tokens[0]).rfind("<|im_start|>system\nBe kind.<|im_end|>\n", 0), 0u);
  EXPECT_EQ(tok.decode(c.tokens[1]).rfind("<|im_start|>system\nOwn.<|im_end|>\n", 0), 0u);
}

TEST_F(PrepareFormats, MixFollowsTheWeightsPerSourceWhateverTheThreads) {
  std::vector<json> a;
  std::vector<json> b;
  for (int i = 0; i < 300; ++i)
    a.push_back({{"instruction", "A" + std::to_string(i)}, {"output", "a"}});
  for (int i = 0; i < 1000; ++i)
    b.push_back({{"instruction", "B" + std::to_string(i)}, {"output", "b"}});
  const auto in_a = tmp_.write("a.jsonl", jsonl(a));
  const auto in_b = tmp_.write("b.jsonl", jsonl(b));
  auto run = [&](int threads, const std::string& name) {
    PrepareOptions o = options(PrepareFormat::kAlpaca, {in_a, in_b}, name + ".h5");
    o.weights = {1.0, 3.0};
    o.mix_records = 800;
    o.val_fraction = 0.1;
    o.val_output = tmp_.path() / (name + "-val.h5");
    o.seed = 5;
    o.threads = threads;
    o.chunk_records = 97;  // several chunks
    return runPrepare(o);
  };
  const PrepareSummary one = run(1, "one");
  const PrepareSummary three = run(3, "three");
  const Contents train1 = readAll(tmp_.path() / "one.h5");
  const Contents train3 = readAll(tmp_.path() / "three.h5");
  EXPECT_EQ(train1.tokens, train3.tokens);
  EXPECT_EQ(readAll(tmp_.path() / "one-val.h5").tokens,
            readAll(tmp_.path() / "three-val.h5").tokens);
  EXPECT_EQ(json::parse(one.report_json)["sources"], json::parse(three.report_json)["sources"]);

  const json report = json::parse(one.report_json);
  ASSERT_EQ(train1.tokens.size(), 800u);
  EXPECT_EQ(report["sources"][0]["train"]["samples"], 200);  // 800 * 1/4
  EXPECT_EQ(report["sources"][1]["train"]["samples"], 600);  // 800 * 3/4
  // The 200 of source a are all distinct records (it has 270 or so outside validation); b
  // repeats none either (600 of about 900).
  const Tokenizer tok = Tokenizer::fromDir(tok_dir());
  std::set<std::string> train_prompts;
  for (const auto& t : train1.tokens) train_prompts.insert(tok.decode(t));
  EXPECT_EQ(train_prompts.size(), 800u);
  // Validation: each source gives about 10% of its records, none of which is trained on.
  const int64_t val_a = report["sources"][0]["val"]["samples"];
  const int64_t val_b = report["sources"][1]["val"]["samples"];
  EXPECT_NEAR(val_a, 30, 18);   // binomial(300, 0.1): sd 5.2, so 3.5 sd
  EXPECT_NEAR(val_b, 100, 33);  // binomial(1000, 0.1): sd 9.5
  for (const auto& t : readAll(tmp_.path() / "one-val.h5").tokens) {
    EXPECT_EQ(train_prompts.count(tok.decode(t)), 0u) << tok.decode(t);
  }
  EXPECT_EQ(report["records"]["read"], 1300);
  EXPECT_EQ(
      report["records"]["not_in_mix"].get<int64_t>() + report["records"]["kept"].get<int64_t>(),
      1300);
}

TEST_F(PrepareFormats, ReportCountsAgreeWithTheFilesAndAreWritten) {
  // 7 records: two identical, one empty output, one too long for --seq-len 24 (dropped), and
  // three ordinary ones: read 7, kept 5, empty 1, dropped 1, duplicates 1.
  const std::vector<json> records = {{{"instruction", "one"}, {"output", "1"}},
                                     {{"instruction", "two"}, {"output", "2"}},
                                     {{"instruction", "one"}, {"output", "1"}},
                                     {{"instruction", "three"}, {"output", ""}},
                                     {{"instruction", std::string(200, 'x')}, {"output", "long"}},
                                     {{"instruction", "four"}, {"output", "4"}},
                                     {{"instruction", "five"}, {"output", "5"}}};
  const auto in = tmp_.write("a.jsonl", jsonl(records));
  PrepareOptions o = options(PrepareFormat::kAlpaca, {in});
  o.seq_len = 24;
  o.on_overflow = OverflowPolicy::kDrop;
  o.report = tmp_.path() / "report.json";
  const PrepareSummary s = runPrepare(o);
  const json report = json::parse(s.report_json);
  EXPECT_EQ(json::parse(testing::readFile(o.report)), report);
  EXPECT_EQ(report["records"], json::parse(R"({"read": 7, "kept": 5, "empty": 1, "truncated": 0,
                                               "dropped": 1, "duplicates": 1, "not_in_mix": 0})"));
  const Contents c = readAll(o.output);
  EXPECT_EQ(report["splits"]["train"]["samples"], c.tokens.size());
  EXPECT_EQ(report["splits"]["train"]["tokens"], c.tokens_total);
  EXPECT_EQ(report["splits"]["train"]["loss_tokens"], c.loss_tokens);
  EXPECT_EQ(report["lengths"]["sample"]["max"], c.max_length);
  EXPECT_EQ(report["lengths"]["answer"]["max"], 2);  // a digit and <|im_end|>
  int64_t binned = 0;
  for (const auto& n : report["histogram"]["counts"]) binned += n.get<int64_t>();
  EXPECT_EQ(binned, 5);
  EXPECT_EQ(report["settings"]["format"], "alpaca");
  EXPECT_EQ(report["settings"]["train_on"], "all-assistant");
  const std::string table = formatPrepareSummary(s);
  EXPECT_NE(table.find("read 7, kept 5, empty 1, truncated 0, dropped 1, duplicates 1"),
            std::string::npos)
      << table;
}

TEST_F(PrepareFormats, ErrorsNameTheRecordAndField) {
  auto refused = [&](PrepareOptions o) -> std::string {
    try {
      runPrepare(o);
    } catch (const InputError& e) {
      EXPECT_FALSE(fs::exists(o.output));
      return e.what();
    }
    return "(accepted)";
  };
  const auto no_answer = tmp_.write(
      "q.jsonl", jsonl({{{"messages", conversation(1)}},
                        {{"messages", json::array({{{"role", "user"}, {"content", "x"}}})}}}));
  PrepareOptions o = options(PrepareFormat::kChat, {no_answer});
  o.train_on = TrainOn::kLastAssistant;
  EXPECT_NE(refused(o).find("q.jsonl:2: messages: no assistant turn"), std::string::npos);
  // The same record is merely empty under all-assistant.
  o.train_on = TrainOn::kAllAssistant;
  o.output = tmp_.path() / "fine.h5";
  EXPECT_EQ(runPrepare(o).empty, 1);

  PrepareOptions r = options(PrepareFormat::kAlpaca, {no_answer}, "r.h5");
  r.fields.reasoning = "Complex_CoT";
  tmp_.write("tok/chat_template.jinja", kChatMl);  // reads no reasoning
  EXPECT_NE(refused(r).find("never reads a reasoning trace"), std::string::npos);

  PrepareOptions w = options(PrepareFormat::kAlpaca, {no_answer, no_answer}, "w.h5");
  w.weights = {1.0};
  EXPECT_NE(refused(w).find("every input or to none"), std::string::npos);
}

TEST(PrepareFormatsQwen3, ReasoningFieldGoesInTheThinkBlockAsTarget) {
  const auto root = testing::sharedTokenizersDir();
  if (root.empty() || !fs::exists(root / "qwen3" / "tokenizer.json")) {
    GTEST_SKIP() << "no Qwen3 tokenizer under " << root;
  }
  TempDir tmp("loom-prepare-medical");
  // The medical-o1 recipe: {"Question", "Complex_CoT", "Response"}.
  const auto in =
      tmp.write("m.jsonl", jsonl({{{"Question", "Fever and rash?"},
                                   {"Complex_CoT", "Rash after fever suggests measles."},
                                   {"Response", "Likely measles."}},
                                  {{"Question", "Q"}, {"Complex_CoT", ""}, {"Response", "A"}}}));
  PrepareOptions o;
  o.tokenizer_dir = root / "qwen3";
  o.inputs = {in};
  o.format = PrepareFormat::kAlpaca;
  o.output = tmp.path() / "out.h5";
  o.progress = false;
  o.fields =
      parseRecordFields("instruction=Question,reasoning=Complex_CoT,output=Response", "--fields");
  runPrepare(o);
  const Tokenizer tok = Tokenizer::fromDir(o.tokenizer_dir);
  const Contents c = readAll(o.output);
  ASSERT_EQ(c.tokens.size(), 2u);
  // With a trace, thinking is on: the whole think block is what the model learns to write.
  // Context: the prompt up to the assistant header, and the newline after the closing token.
  EXPECT_EQ(testing::decodeMasked(tok, c.tokens[0], c.masks[0], 0),
            "<|im_start|>user\nFever and rash?<|im_end|>\n<|im_start|>assistant\n\n");
  EXPECT_EQ(testing::decodeMasked(tok, c.tokens[0], c.masks[0], 1),
            "<think>\nRash after fever suggests measles.\n</think>\n\nLikely measles.<|im_end|>");
  // Without one, thinking is off: the empty think block is context, as inference prompts it.
  EXPECT_EQ(testing::decodeMasked(tok, c.tokens[1], c.masks[1], 1), "A<|im_end|>");
}

}  // namespace
}  // namespace loom

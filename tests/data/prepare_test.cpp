// Tests of `trainer prepare` (loom::runPrepare and the CLI) and of `trainer inspect --data`
// (loom::inspectDataset), on a small hand-written Qwen-shaped tokenizer: round trips against
// direct tokenization, masks, text splitting, the validation split, thread-count independence,
// and the refusal of bad input (exit 2, file:line / field named, no file left behind).

#include "loom/data/prepare.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/data/chat_template.hpp"
#include "loom/data/dataset_inspect.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/tokenizer.hpp"
#include "support/test_support.hpp"
#include "support/test_tokenizer.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

using testing::writeTokenizer;

std::string jsonl(const std::vector<json>& records) {
  std::string out;
  for (const auto& r : records) out += r.dump() + "\n";
  return out;
}

std::vector<json> alpacaRecords(int n) {
  std::vector<json> out;
  for (int i = 0; i < n; ++i) {
    json r = {{"instruction", "Add " + std::to_string(i) + " and " + std::to_string(2 * i) + "."},
              {"output",
               std::to_string(i) + " + " + std::to_string(2 * i) + " = " + std::to_string(3 * i)}};
    if (i % 3 == 1)
      r["input"] = "the numbers are small, here is some context: " +
                   std::string(static_cast<size_t>(i % 7), 'x');
    if (i % 5 == 2) r["system"] = "You are a calculator.";
    out.push_back(r);
  }
  return out;
}

/// A prepared file's contents, everything but the creation time.
struct Contents {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<uint8_t>> masks;
  std::vector<int32_t> loss_tokens;
  Hdf5DatasetInfo info;
};

Contents readAll(const fs::path& path) {
  const Hdf5Dataset ds(path);
  Contents c;
  c.info = ds.info();
  c.info.created.clear();
  c.loss_tokens = ds.lossTokens();
  for (int64_t i = 0; i < ds.numSamples(); ++i) {
    Sample s = ds.readSample(i);
    c.tokens.push_back(std::move(s.tokens));
    c.masks.push_back(std::move(s.loss_mask));
  }
  return c;
}

bool sameInfo(const Hdf5DatasetInfo& a, const Hdf5DatasetInfo& b) {
  return a.vocab_size == b.vocab_size && a.tokenizer_hash == b.tokenizer_hash &&
         a.eos_id == b.eos_id && a.pad_id == b.pad_id && a.source_files == b.source_files &&
         a.template_name == b.template_name && a.num_samples == b.num_samples &&
         a.num_tokens == b.num_tokens && a.num_loss_tokens == b.num_loss_tokens;
}

class Prepare : public ::testing::Test {
 protected:
  void SetUp() override { writeTokenizer(tmp_.path() / "tok"); }

  PrepareOptions options(PrepareFormat format, std::vector<fs::path> inputs) const {
    PrepareOptions o;
    o.tokenizer_dir = tmp_.path() / "tok";
    o.inputs = std::move(inputs);
    o.format = format;
    o.output = tmp_.path() / "out.h5";
    o.progress = false;
    o.threads = 2;
    return o;
  }
  Tokenizer tokenizer() const { return Tokenizer::fromDir(tmp_.path() / "tok"); }

  TempDir tmp_{"loom-prepare"};
};

/// Expected sample of a chat rendering, as the file stores it (mask[0] = 0).
TokenizedChat expectedChat(const Tokenizer& tok, ChatTemplate family,
                           const std::vector<ChatMessage>& messages) {
  TokenizedChat t = tokenizeChat(tok, renderChat(family, messages, false));
  if (!t.loss_mask.empty()) t.loss_mask[0] = 0;
  return t;
}

// ---------------------------------------------------------------------------------------
// Round trips.

TEST_F(Prepare, AlpacaRoundTripEqualsChatTemplateTokenization) {
  const auto records = alpacaRecords(40);
  auto o = options(PrepareFormat::kAlpaca, {tmp_.write("a.jsonl", jsonl(records))});
  const PrepareSummary s = runPrepare(o);
  EXPECT_EQ(s.records, 40);
  EXPECT_EQ(s.train.samples, 40);
  const Tokenizer tok = tokenizer();
  const Contents c = readAll(o.output);
  ASSERT_EQ(c.tokens.size(), 40u);
  int64_t loss = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const json& r = records[i];
    std::vector<ChatMessage> m;
    if (r.contains("system")) m.push_back({"system", r["system"], std::nullopt});
    std::string user = r["instruction"];
    if (r.contains("input")) user += "\n\n" + r["input"].get<std::string>();
    m.push_back({"user", user, std::nullopt});
    m.push_back({"assistant", r["output"], std::nullopt});
    const TokenizedChat want = expectedChat(tok, ChatTemplate::kQwen, m);
    EXPECT_EQ(c.tokens[i], want.ids) << "record " << i;
    EXPECT_EQ(c.masks[i], want.loss_mask) << "record " << i;
    // The targets are exactly the answer and the token that closes the turn.
    EXPECT_EQ(testing::decodeMasked(tok, c.tokens[i], c.masks[i], 1),
              r["output"].get<std::string>() + "<|im_end|>");
    loss += c.loss_tokens[i];
  }
  EXPECT_EQ(c.info.vocab_size, tok.vocabSize());
  EXPECT_EQ(c.info.tokenizer_hash, tok.contentHash());
  EXPECT_EQ(c.info.eos_id, *tok.eosId());
  EXPECT_EQ(c.info.pad_id, *tok.padId());
  EXPECT_EQ(s.train.loss_tokens, loss);
  EXPECT_EQ(json::parse(c.info.template_name).at("chat_template"), "built-in qwen");
}

TEST_F(Prepare, ChatRoundTripMasksAssistantTurnsOnly) {
  const std::vector<json> records = {
      {{"messages",
        {{{"role", "system"}, {"content", "Be brief."}},
         {{"role", "user"}, {"content", "What is the answer?"}},
         {{"role", "assistant"}, {"content", "42"}},
         {{"role", "user"}, {"content", "And in words?"}},
         {{"role", "assistant"}, {"content", "forty-two"}}}}},
      {{"messages",
        {{{"role", "user"}, {"content", "hello there"}},
         {{"role", "assistant"}, {"content", "hi, how can I help?"}}}}}};
  auto o = options(PrepareFormat::kChat, {tmp_.write("c.jsonl", jsonl(records))});
  runPrepare(o);
  const Tokenizer tok = tokenizer();
  const Contents c = readAll(o.output);
  ASSERT_EQ(c.tokens.size(), 2u);
  for (size_t i = 0; i < records.size(); ++i) {
    const auto m = parseChatMessages(records[i]["messages"], "test");
    const TokenizedChat want = expectedChat(tok, ChatTemplate::kQwen, m);
    EXPECT_EQ(c.tokens[i], want.ids);
    EXPECT_EQ(c.masks[i], want.loss_mask);
  }
  EXPECT_EQ(testing::decodeMasked(tok, c.tokens[0], c.masks[0], 1),
            "42<|im_end|>forty-two<|im_end|>");
  EXPECT_EQ(testing::decodeMasked(tok, c.tokens[1], c.masks[1], 1),
            "hi, how can I help?<|im_end|>");
}

TEST_F(Prepare, ChatTemplateFamilyIsDetectedOrRefused) {
  TempDir llama("loom-prepare-llama");
  writeTokenizer(llama.path(), "llama3");
  const auto in = tmp_.write("a.jsonl", jsonl(alpacaRecords(3)));
  auto o = options(PrepareFormat::kAlpaca, {in});
  o.tokenizer_dir = llama.path();
  runPrepare(o);
  const Tokenizer tok = Tokenizer::fromDir(llama.path());
  const Contents c = readAll(o.output);
  EXPECT_EQ(json::parse(c.info.template_name).at("chat_template"), "built-in llama3");
  EXPECT_EQ(tok.decode({c.tokens[0][0]}), "<|begin_of_text|>");
  EXPECT_EQ(testing::decodeMasked(tok, c.tokens[0], c.masks[0], 1), "0 + 0 = 0<|eot_id|>");
  // Forcing the other family onto a tokenizer without its tokens is refused.
  o.chat_template = "qwen";
  try {
    runPrepare(o);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("<|im_start|>"), std::string::npos) << e.what();
  }
}

TEST_F(Prepare, TemplateRoundTripTokenizesPromptAndCompletionSeparately) {
  const std::vector<json> records = {
      {{"Question", "Why is the sky blue?"},
       {"Complex_CoT", "Rayleigh"},
       {"Response", "Scattering."}},
      {{"Question", "2+2?"}, {"Complex_CoT", 4}, {"Response", " four"}}};
  auto o = options(PrepareFormat::kTemplate, {tmp_.write("t.jsonl", jsonl(records))});
  o.prompt_template = unescapeTemplate(
      R"(Question: {Question}\nAnalysis: {Complex_CoT}\n### Answer {{literal}}:\n)");
  o.completion_template = "{Response}";
  runPrepare(o);
  const Tokenizer tok = tokenizer();
  const Contents c = readAll(o.output);
  ASSERT_EQ(c.tokens.size(), 2u);
  const std::vector<std::string> prompts = {
      "Question: Why is the sky blue?\nAnalysis: Rayleigh\n### Answer {literal}:\n",
      "Question: 2+2?\nAnalysis: 4\n### Answer {literal}:\n"};
  for (size_t i = 0; i < records.size(); ++i) {
    std::vector<int32_t> ids = tok.encode(prompts[i]);
    const size_t prompt_len = ids.size();
    const auto completion = tok.encode(records[i]["Response"].get<std::string>());
    ids.insert(ids.end(), completion.begin(), completion.end());
    ids.push_back(*tok.eosId());
    std::vector<uint8_t> mask(ids.size(), 1);
    std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(prompt_len), 0);
    EXPECT_EQ(c.tokens[i], ids);
    EXPECT_EQ(c.masks[i], mask);
    EXPECT_EQ(c.loss_tokens[i], static_cast<int32_t>(completion.size() + 1));
  }
  const json desc = json::parse(c.info.template_name);
  EXPECT_EQ(desc.at("prompt"), R"(Question: {Question}
Analysis: {Complex_CoT}
### Answer {{literal}}:
)");
  EXPECT_EQ(desc.at("completion"), "{Response}");
}

TEST_F(Prepare, TextDocumentsSplitIntoOverlappingPieces) {
  std::string long_doc;
  for (int i = 0; i < 60; ++i) long_doc += "the answer number " + std::to_string(i) + " is near. ";
  const std::vector<std::string> docs = {"short one", long_doc, "", "another short document"};
  std::string txt;
  for (const auto& d : docs) txt += d + "\r\n";  // CRLF lines: the \r is not part of the text
  auto o = options(PrepareFormat::kText, {tmp_.write("docs.txt", txt)});
  o.seq_len = 64;
  const PrepareSummary s = runPrepare(o);
  EXPECT_EQ(s.records, 4);
  EXPECT_EQ(s.empty, 1);
  EXPECT_EQ(s.split_documents, 1);
  const Tokenizer tok = tokenizer();
  const Contents c = readAll(o.output);
  size_t sample = 0;
  int64_t loss = 0;
  for (const auto& d : docs) {
    if (d.empty()) continue;
    std::vector<int32_t> want = tok.encode(d);
    want.push_back(*tok.eosId());
    // Reassemble the pieces, dropping each later piece's first (overlapping) token.
    std::vector<int32_t> got;
    do {
      ASSERT_LT(sample, c.tokens.size());
      const auto& piece = c.tokens[sample];
      EXPECT_LE(piece.size(), 64u);
      EXPECT_TRUE(std::all_of(c.masks[sample].begin() + 1, c.masks[sample].end(),
                              [](uint8_t m) { return m == 1; }));
      if (!got.empty()) EXPECT_EQ(piece.front(), got.back());
      got.insert(got.end(), piece.begin() + (got.empty() ? 0 : 1), piece.end());
      loss += c.loss_tokens[sample];
      ++sample;
    } while (got.size() < want.size());
    EXPECT_EQ(got, want);
    loss -= static_cast<int64_t>(want.size()) - 1;  // every token but the first, exactly once
  }
  EXPECT_EQ(sample, c.tokens.size());
  EXPECT_EQ(loss, 0);
  EXPECT_GT(c.tokens.size(), 4u);
  EXPECT_EQ(s.train.max_length, 64);
}

TEST_F(Prepare, JsonArrayAndJsonlTextInputsGiveTheSameSamples) {
  const std::vector<json> records = {{{"text", "first document"}}, {{"text", "second, longer"}}};
  auto a = options(PrepareFormat::kText, {tmp_.write("docs.json", json(records).dump(2))});
  a.output = tmp_.path() / "a.h5";
  auto b = options(PrepareFormat::kText, {tmp_.write("docs.jsonl", jsonl(records))});
  b.output = tmp_.path() / "b.h5";
  runPrepare(a);
  runPrepare(b);
  EXPECT_EQ(readAll(a.output).tokens, readAll(b.output).tokens);
  EXPECT_EQ(readAll(a.output).tokens.size(), 2u);
}

TEST_F(Prepare, OverlongSamplesAreTruncatedOrDropped) {
  std::vector<json> records = alpacaRecords(6);
  records[2]["output"] = std::string(400, 'z');
  records[4]["instruction"] = std::string(400, 'q');  // the prompt alone is too long
  auto o = options(PrepareFormat::kAlpaca, {tmp_.write("a.jsonl", jsonl(records))});
  o.on_overflow = OverflowPolicy::kDrop;
  o.seq_len = 300;  // the normal records fit, the long ones do not
  const int64_t longest_normal = runPrepare(o).train.max_length;
  ASSERT_LT(longest_normal, 300);
  o.seq_len = longest_normal + 4;
  o.on_overflow = OverflowPolicy::kTruncate;
  PrepareSummary s = runPrepare(o);
  EXPECT_EQ(s.truncated, 1);
  EXPECT_EQ(s.dropped, 1);  // truncating would leave no target
  EXPECT_EQ(s.train.samples, 5);
  EXPECT_EQ(s.train.max_length, o.seq_len);
  o.on_overflow = OverflowPolicy::kDrop;
  s = runPrepare(o);
  EXPECT_EQ(s.truncated, 0);
  EXPECT_EQ(s.dropped, 2);
  EXPECT_EQ(s.train.samples, 4);
}

TEST_F(Prepare, EmptyRecordsAreSkippedAndCounted) {
  std::vector<json> records = alpacaRecords(4);
  records[1]["output"] = "";
  auto o = options(PrepareFormat::kAlpaca, {tmp_.write("a.jsonl", jsonl(records) + "\n  \n")});
  const PrepareSummary s = runPrepare(o);
  EXPECT_EQ(s.records, 4);  // blank JSONL lines are not records
  EXPECT_EQ(s.empty, 1);
  EXPECT_EQ(s.train.samples, 3);
  const std::string text = formatPrepareSummary(s);
  EXPECT_NE(text.find("empty 1"), std::string::npos) << text;
  EXPECT_NE(text.find("samples 3"), std::string::npos) << text;
}

// ---------------------------------------------------------------------------------------
// Determinism.

TEST_F(Prepare, ValidationSplitIsSeededDeterministicAndDisjoint) {
  const auto records = alpacaRecords(300);
  const auto in = tmp_.write("a.jsonl", jsonl(records));
  auto run = [&](uint64_t seed, const std::string& tag) {
    auto o = options(PrepareFormat::kAlpaca, {in});
    o.output = tmp_.path() / (tag + "-train.h5");
    o.val_output = tmp_.path() / (tag + "-val.h5");
    o.val_fraction = 0.2;
    o.seed = seed;
    const PrepareSummary s = runPrepare(o);
    EXPECT_TRUE(s.val.has_value());
    return std::make_pair(readAll(o.output), readAll(o.val_output));
  };
  const auto [train1, val1] = run(7, "a");
  const auto [train2, val2] = run(7, "b");
  const auto [train3, val3] = run(8, "c");
  EXPECT_EQ(train1.tokens, train2.tokens);
  EXPECT_EQ(val1.tokens, val2.tokens);
  EXPECT_NE(val1.tokens, val3.tokens);
  EXPECT_EQ(train1.tokens.size() + val1.tokens.size(), 300u);
  EXPECT_GT(val1.tokens.size(), 30u);
  EXPECT_LT(val1.tokens.size(), 90u);
  // Each record lands in exactly one split (records are distinct).
  std::set<std::vector<int32_t>> all(train1.tokens.begin(), train1.tokens.end());
  for (const auto& v : val1.tokens) EXPECT_TRUE(all.insert(v).second) << "in both splits";
  EXPECT_EQ(all.size(), 300u);
}

TEST_F(Prepare, ThreadCountAndChunkingDoNotChangeTheOutput) {
  std::vector<json> records = alpacaRecords(500);
  std::string text_docs;
  for (int i = 0; i < 300; ++i)
    text_docs += "document " + std::to_string(i) + " " +
                 std::string(static_cast<size_t>(i % 90), 'w') + "\n";
  for (const auto format : {PrepareFormat::kAlpaca, PrepareFormat::kText}) {
    const fs::path in = format == PrepareFormat::kText ? tmp_.write("d.txt", text_docs)
                                                       : tmp_.write("a.jsonl", jsonl(records));
    std::vector<Contents> outs;
    for (const int threads : {1, 4}) {
      for (const int64_t chunk : {int64_t{7}, int64_t{100000}}) {
        auto o = options(format, {in});
        o.threads = threads;
        o.chunk_records = chunk;
        o.seq_len = format == PrepareFormat::kText ? 32 : 4096;
        o.output =
            tmp_.path() / ("t" + std::to_string(threads) + "-" + std::to_string(chunk) + ".h5");
        o.val_output =
            tmp_.path() / ("v" + std::to_string(threads) + "-" + std::to_string(chunk) + ".h5");
        o.val_fraction = 0.1;
        runPrepare(o);
        outs.push_back(readAll(o.output));
        outs.push_back(readAll(o.val_output));
      }
    }
    for (size_t i = 2; i < outs.size(); ++i) {
      EXPECT_EQ(outs[i].tokens, outs[i % 2].tokens) << "run " << i / 2;
      EXPECT_EQ(outs[i].masks, outs[i % 2].masks) << "run " << i / 2;
      EXPECT_EQ(outs[i].loss_tokens, outs[i % 2].loss_tokens);
      EXPECT_TRUE(sameInfo(outs[i].info, outs[i % 2].info));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Bad input through the library (the CLI cases are below).

std::string inputErrorOf(const PrepareOptions& o) {
  try {
    runPrepare(o);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

TEST_F(Prepare, BadOptionsNameTheOption) {
  const auto in = tmp_.write("a.jsonl", jsonl(alpacaRecords(2)));
  auto o = options(PrepareFormat::kTemplate, {in});
  EXPECT_NE(inputErrorOf(o).find("--prompt-template"), std::string::npos);
  o.prompt_template = "Q: {instruction";
  o.completion_template = "{output}";
  EXPECT_NE(inputErrorOf(o).find("--prompt-template: '{' at character 3"), std::string::npos)
      << inputErrorOf(o);
  // Found by fuzzing: a template that is not UTF-8 ended in an uncaught JSON exception.
  o.prompt_template = "Q\xBA {instruction}";
  EXPECT_NE(inputErrorOf(o).find("--prompt-template: not valid UTF-8 (at byte 1"),
            std::string::npos)
      << inputErrorOf(o);
  o = options(PrepareFormat::kAlpaca, {in});
  o.val_fraction = 0.1;
  EXPECT_NE(inputErrorOf(o).find("--val-output"), std::string::npos);
  o.val_fraction = 1.5;
  EXPECT_NE(inputErrorOf(o).find("--val-fraction"), std::string::npos);
  o = options(PrepareFormat::kText, {in});
  o.seq_len = 1;
  EXPECT_NE(inputErrorOf(o).find("--seq-len"), std::string::npos);
  o = options(PrepareFormat::kAlpaca, {tmp_.write("d.txt", "plain\n")});
  EXPECT_NE(inputErrorOf(o).find("only --format text"), std::string::npos);
  TempDir no_eos("loom-prepare-noeos");
  writeTokenizer(no_eos.path(), "qwen", /*with_eos=*/false);
  o = options(PrepareFormat::kText, {in});
  o.tokenizer_dir = no_eos.path();
  EXPECT_NE(inputErrorOf(o).find("eos_token"), std::string::npos);
  EXPECT_FALSE(fs::exists(o.output));
}

// Found by fuzzing: nlohmann reports a number beyond a double's range as out_of_range, not as
// a parse_error, and it escaped as an uncaught exception.
TEST_F(Prepare, NumberBeyondDoubleRangeIsMalformedJson) {
  const auto line = tmp_.write("n.jsonl", jsonl(alpacaRecords(1)) + "{\"instruction\": 1e999}\n");
  const auto array = tmp_.write("n.json", "[{\"instruction\": \"x\", \"output\": -1e400}]");
  for (const auto& [in, where] :
       {std::pair{line, "n.jsonl:2: malformed JSON"}, std::pair{array, "n.json: malformed JSON"}}) {
    const std::string err = inputErrorOf(options(PrepareFormat::kAlpaca, {in}));
    EXPECT_NE(err.find(where), std::string::npos) << err;
    EXPECT_NE(err.find("number overflow"), std::string::npos) << err;
  }
}

// A UTF-8 byte-order mark (Notepad writes one) is skipped by every input kind: the tokens are
// those of the same file without it.
TEST_F(Prepare, Utf8ByteOrderMarkIsSkippedInEveryFormat) {
  const std::string bom = "\xEF\xBB\xBF";
  const std::string docs = "first document\nsecond one\n";
  const std::string lines = jsonl(alpacaRecords(3));
  const std::string array = "[" + alpacaRecords(1)[0].dump() + "]";
  const struct {
    PrepareFormat format;
    std::string name;
    std::string text;
  } cases[] = {{PrepareFormat::kText, "d.txt", docs},
               {PrepareFormat::kAlpaca, "a.jsonl", lines},
               {PrepareFormat::kAlpaca, "a.json", array}};
  for (const auto& c : cases) {
    auto plain = options(c.format, {tmp_.write(c.name, c.text)});
    plain.output = tmp_.path() / "plain.h5";
    runPrepare(plain);
    auto marked = options(c.format, {tmp_.write("bom-" + c.name, bom + c.text)});
    marked.output = tmp_.path() / "marked.h5";
    runPrepare(marked);
    const Contents want = readAll(plain.output);
    const Contents got = readAll(marked.output);
    EXPECT_EQ(got.tokens, want.tokens) << c.name;
    EXPECT_EQ(got.masks, want.masks) << c.name;
  }
}

// UTF-16 (with or without its mark) is refused by name before any record, with no raw
// bytes echoed.
TEST_F(Prepare, Utf16InputIsRefusedByName) {
  const std::string ascii = "{\"instruction\": \"a\", \"output\": \"b\"}\n";
  std::string le = "\xFF\xFE";
  std::string be_no_mark;
  for (char ch : ascii) {
    le += ch;
    le += '\0';
    be_no_mark += '\0';
    be_no_mark += ch;
  }
  for (const auto& [name, bytes, encoding] :
       {std::tuple{"le.jsonl", le, "UTF-16 (little-endian)"},
        std::tuple{"be.jsonl", be_no_mark, "UTF-16 (big-endian)"}}) {
    const auto in = tmp_.write(name, bytes);
    const std::string err = inputErrorOf(options(PrepareFormat::kAlpaca, {in}));
    EXPECT_NE(err.find(in.string() + ": the file is encoded as " + encoding), std::string::npos)
        << err;
    EXPECT_NE(err.find("iconv"), std::string::npos) << err;
    EXPECT_EQ(err.find('\xFF'), std::string::npos) << "a raw byte was echoed: " << err;
  }
}

// A byte that is not UTF-8 in a JSON line is shown escaped, never raw on the terminal.
TEST_F(Prepare, MalformedJsonMessageShowsBytesEscaped) {
  const auto in = tmp_.write("x.jsonl", jsonl(alpacaRecords(1)) + "\xFF{}\n");
  const std::string err = inputErrorOf(options(PrepareFormat::kAlpaca, {in}));
  EXPECT_NE(err.find("x.jsonl:2: malformed JSON"), std::string::npos) << err;
  EXPECT_EQ(err.find('\xFF'), std::string::npos) << "a raw byte was echoed: " << err;
  EXPECT_NE(err.find("\\xFF"), std::string::npos) << err;
}

TEST_F(Prepare, FirstBadRecordInInputOrderIsReportedWhateverTheThreads) {
  std::string text = jsonl(alpacaRecords(50));
  text += "{\"instruction\": \"x\"}\n";  // line 51: no output
  text += jsonl(alpacaRecords(30));
  text += "{not json\n";  // line 82
  const auto in = tmp_.write("a.jsonl", text);
  for (const int threads : {1, 3}) {
    auto o = options(PrepareFormat::kAlpaca, {in});
    o.threads = threads;
    o.chunk_records = 8;
    o.val_output = tmp_.path() / "val.h5";
    o.val_fraction = 0.5;
    const std::string err = inputErrorOf(o);
    EXPECT_NE(err.find("a.jsonl:51: missing field 'output'"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(o.output));
    EXPECT_FALSE(fs::exists(o.val_output));
  }
  // Nothing but the inputs and the tokenizer is left in the folder (no temporary files).
  for (const auto& e : fs::directory_iterator(tmp_.path())) {
    EXPECT_TRUE(e.path().filename() == "a.jsonl" || e.path().filename() == "tok") << e.path();
  }
}

// ---------------------------------------------------------------------------------------
// The trainer command line.

struct Cli {
  TempDir tmp{"loom-prepare-cli"};
  Cli() { writeTokenizer(tmp.path() / "tok"); }

  testing::ProcessResult prepare(std::vector<std::string> args) const {
    std::vector<std::string> argv = {testing::trainerPath(), "prepare", "--no-progress",
                                     "--tokenizer", (tmp.path() / "tok").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::runProcess(argv);
  }
  std::string out() const { return (tmp.path() / "out.h5").string(); }
  std::string val() const { return (tmp.path() / "val.h5").string(); }

  /// Runs prepare on `input` and checks exit 2, that the message names every `expected`
  /// part, and that neither output file (nor a temporary one) exists afterwards.
  void expectRefused(const std::vector<std::string>& args,
                     const std::vector<std::string>& expected) const {
    std::vector<std::string> all = args;
    all.insert(all.end(), {"--output", out(), "--val-fraction", "0.5", "--val-output", val()});
    const auto r = prepare(all);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    for (const auto& e : expected) EXPECT_NE(r.output.find(e), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out()));
    EXPECT_FALSE(fs::exists(val()));
    for (const auto& e : fs::directory_iterator(tmp.path())) {
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
    }
  }
};

TEST(PrepareCli, RoundTripAndSummary) {
  Cli cli;
  const auto in = cli.tmp.write("a.jsonl", jsonl(alpacaRecords(20)));
  const auto r =
      cli.prepare({"--input", in.string(), "--format", "alpaca", "--output", cli.out(), "--threads",
                   "2", "--val-fraction", "0.25", "--val-output", cli.val(), "--seed", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("read 20, kept 20"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("loss tokens"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("length min"), std::string::npos) << r.output;
  const Hdf5Dataset train(cli.out());
  const Hdf5Dataset val(cli.val());
  EXPECT_EQ(train.numSamples() + val.numSamples(), 20);
  // The library with the same options gives the same samples.
  PrepareOptions o;
  o.tokenizer_dir = cli.tmp.path() / "tok";
  o.inputs = {in};
  o.output = cli.tmp.path() / "lib.h5";
  o.val_output = cli.tmp.path() / "lib-val.h5";
  o.val_fraction = 0.25;
  o.seed = 3;
  o.progress = false;
  runPrepare(o);
  EXPECT_EQ(readAll(o.output).tokens, readAll(cli.out()).tokens);
}

TEST(PrepareCli, HelpDocumentsFormatsAndOptions) {
  const auto r = testing::runProcess({testing::trainerPath(), "prepare", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* s :
       {"--tokenizer", "--input", "--format", "--output", "--seq-len", "--on-overflow",
        "--val-fraction", "--val-output", "--prompt-template", "--completion-template",
        "--chat-template", "--threads", "--seed", "alpaca", "template", "{Field}"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s;
  }
}

TEST(PrepareCli, MalformedJsonlLineNamesFileAndLine) {
  Cli cli;
  const auto in =
      cli.tmp.write("bad.jsonl", jsonl(alpacaRecords(2)) + "{\"instruction\": \"x\",\n");
  cli.expectRefused({"--input", in.string(), "--format", "alpaca"},
                    {"bad.jsonl:3", "malformed JSON"});
}

TEST(PrepareCli, MalformedLineAfterManyChunksLeavesNothingBehind) {
  // Far past the first chunk, so both files have been written to before the error.
  Cli cli;
  const auto in = cli.tmp.write("big.jsonl", jsonl(alpacaRecords(20000)) + "[1, 2\n");
  cli.expectRefused({"--input", in.string(), "--format", "alpaca", "--threads", "2"},
                    {"big.jsonl:20001", "malformed JSON"});
}

TEST(PrepareCli, MissingFieldNamesFileLineAndField) {
  Cli cli;
  const auto in =
      cli.tmp.write("m.jsonl", jsonl(alpacaRecords(3)) + "{\"instruction\": \"no answer\"}\n");
  cli.expectRefused({"--input", in.string(), "--format", "alpaca"},
                    {"m.jsonl:4", "missing field 'output'"});
  const auto chat = cli.tmp.write("c.jsonl", "{\"conversation\": []}\n");
  cli.expectRefused({"--input", chat.string(), "--format", "chat"},
                    {"c.jsonl:1", "missing field 'messages'"});
  const auto text = cli.tmp.write("t.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n");
  cli.expectRefused({"--input", text.string(), "--format", "text"},
                    {"t.jsonl:2", "missing field 'text'"});
}

TEST(PrepareCli, EmptyFileIsRefused) {
  Cli cli;
  const auto ok = cli.tmp.write("ok.jsonl", jsonl(alpacaRecords(2)));
  const auto empty = cli.tmp.write("empty.jsonl", "");
  cli.expectRefused({"--input", ok.string(), empty.string(), "--format", "alpaca"},
                    {"empty.jsonl", "empty"});
  const auto blank = cli.tmp.write("blank.jsonl", "\n \n");
  cli.expectRefused({"--input", blank.string(), "--format", "alpaca"}, {"blank.jsonl", "empty"});
  const auto array = cli.tmp.write("array.json", "[]");
  cli.expectRefused({"--input", array.string(), "--format", "alpaca"}, {"array.json", "empty"});
}

TEST(PrepareCli, UnknownFormatIsRefused) {
  Cli cli;
  const auto in = cli.tmp.write("a.jsonl", jsonl(alpacaRecords(2)));
  cli.expectRefused({"--input", in.string(), "--format", "openai"},
                    {"--format", "openai", "alpaca, chat, sharegpt, text or template"});
}

TEST(PrepareCli, MissingTokenizerIsRefused) {
  Cli cli;
  const auto in = cli.tmp.write("a.jsonl", jsonl(alpacaRecords(2)));
  std::vector<std::string> argv = {testing::trainerPath(),
                                   "prepare",
                                   "--tokenizer",
                                   (cli.tmp.path() / "nowhere").string(),
                                   "--input",
                                   in.string(),
                                   "--format",
                                   "alpaca",
                                   "--output",
                                   cli.out()};
  auto r = testing::runProcess(argv);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("nowhere"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(cli.out()));
  // A folder without tokenizer.json.
  fs::create_directories(cli.tmp.path() / "empty-dir");
  argv[3] = (cli.tmp.path() / "empty-dir").string();
  r = testing::runProcess(argv);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("tokenizer.json"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(cli.out()));
}

TEST(PrepareCli, TemplateFieldAbsentFromARecordIsRefused) {
  Cli cli;
  const auto in = cli.tmp.write(
      "t.jsonl",
      "{\"Question\": \"a\", \"Response\": \"b\"}\n{\"Question\": \"c\", \"Answer\": \"d\"}\n");
  cli.expectRefused({"--input", in.string(), "--format", "template", "--prompt-template",
                     "Q: {Question}\\nA: ", "--completion-template", "{Response}"},
                    {"t.jsonl:2", "field 'Response'"});
}

TEST(PrepareCli, InvalidUtf8TextLineIsRefusedWithItsLine) {
  Cli cli;
  const auto in = cli.tmp.write("d.txt", "good line\nbad \xff byte\n");
  cli.expectRefused({"--input", in.string(), "--format", "text"}, {"d.txt:2", "UTF-8"});
}

// ---------------------------------------------------------------------------------------
// trainer inspect --data.

TEST_F(Prepare, InspectShowsSummaryAndMarksContext) {
  auto o = options(PrepareFormat::kAlpaca, {tmp_.write("a.jsonl", jsonl(alpacaRecords(5)))});
  runPrepare(o);
  InspectDataOptions d;
  d.data = o.output;
  d.tokenizer_dir = tmp_.path() / "tok";
  d.samples = {3};
  std::ostringstream out;
  inspectDataset(d, out);
  const std::string text = out.str();
  EXPECT_NE(text.find("samples         5"), std::string::npos) << text;
  EXPECT_NE(text.find("\"chat_template\":\"built-in qwen\""), std::string::npos) << text;
  EXPECT_NE(text.find("--- sample 3:"), std::string::npos) << text;
  // Context in brackets, the answer and its closing token plain.
  EXPECT_NE(text.find("\xE2\x9F\xA6<|im_start|>user\nAdd 3 and 6.<|im_end|>\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\xE2\x9F\xA7"
                      "3 + 6 = 9<|im_end|>\xE2\x9F\xA6\n\xE2\x9F\xA7"),
            std::string::npos)
      << text;
  // Without a tokenizer: ids.
  d.tokenizer_dir.clear();
  std::ostringstream ids;
  inspectDataset(d, ids);
  EXPECT_NE(ids.str().find("token ids"), std::string::npos) << ids.str();
  d.samples = {99};
  EXPECT_THROW(inspectDataset(d, ids), InputError);
}

TEST(InspectCli, DataSummaryAndSamples) {
  Cli cli;
  const auto help = testing::runProcess({testing::trainerPath(), "inspect", "--help"});
  if (help.output.find("--data") == std::string::npos) {
    GTEST_SKIP() << "`trainer inspect` is not registered in src/main/main.cpp in this build";
  }
  const auto in = cli.tmp.write("a.jsonl", jsonl(alpacaRecords(4)));
  ASSERT_EQ(
      cli.prepare({"--input", in.string(), "--format", "alpaca", "--output", cli.out()}).exit_code,
      0);
  auto r =
      testing::runProcess({testing::trainerPath(), "inspect", "--data", cli.out(), "--tokenizer",
                           (cli.tmp.path() / "tok").string(), "--count", "2", "--color", "never"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("samples         4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--- sample 1:"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("--- sample 2:"), std::string::npos) << r.output;
  r = testing::runProcess({testing::trainerPath(), "inspect"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = testing::runProcess(
      {testing::trainerPath(), "inspect", "--data", (cli.tmp.path() / "missing.h5").string()});
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace loom

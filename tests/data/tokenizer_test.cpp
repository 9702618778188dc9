// Unit tests of loom::Tokenizer on small hand-written tokenizer.json files: BPE merge order,
// added tokens, decode, hashing, and the refusal of what it does not implement.

#include "loom/data/tokenizer.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <thread>
#include <vector>

#include "loom/core/error.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using nlohmann::json;
using testing::TempDir;

using testing::codePointToUtf8;

// The byte-level character of each byte (GPT-2's bytes_to_unicode).
std::vector<std::string> byteChars() {
  std::vector<std::string> chars(256);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    chars[b] = codePointToUtf8(direct ? b : next++);
  }
  return chars;
}

// A Qwen-shaped tokenizer.json: 256 byte tokens (ids 0..255), then merges
// "h e", "l l", "he ll", "hell o", "Ġ w" (ids 256..260), and two added tokens.
json smallTokenizer() {
  const auto chars = byteChars();
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[chars[b]] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab["Ġw"] = 260;
  json merges =
      json::array({json::array({"h", "e"}), json::array({"l", "l"}), json::array({"he", "ll"}),
                   json::array({"hell", "o"}), json::array({"Ġ", "w"})});
  return json{{"version", "1.0"},
              {"added_tokens", json::array({{{"id", 261},
                                             {"content", "<|im_end|>"},
                                             {"single_word", false},
                                             {"lstrip", false},
                                             {"rstrip", false},
                                             {"normalized", false},
                                             {"special", true}},
                                            {{"id", 262},
                                             {"content", "<|im_end|>x"},
                                             {"single_word", false},
                                             {"lstrip", false},
                                             {"rstrip", false},
                                             {"normalized", false},
                                             {"special", false}}})},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer",
               {{"type", "Sequence"},
                {"pretokenizers",
                 json::array({{{"type", "Split"},
                               {"pattern", {{"Regex", R"( ?\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+)"}}},
                               {"behavior", "Isolated"},
                               {"invert", false}},
                              {{"type", "ByteLevel"},
                               {"add_prefix_space", false},
                               {"trim_offsets", false},
                               {"use_regex", false}}})}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}}}};
}

Tokenizer load(const TempDir& dir, const json& j, const std::string& name = "tokenizer.json") {
  return Tokenizer::fromFile(dir.write(name, j.dump()));
}

std::string errorOf(const TempDir& dir, const json& j) {
  try {
    load(dir, j);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

TEST(Tokenizer, MergesByRank) {
  TempDir dir;
  const Tokenizer tok = load(dir, smallTokenizer());
  EXPECT_EQ(tok.encode("hello"), (std::vector<int32_t>{259}));
  EXPECT_EQ(tok.encode("hell"), (std::vector<int32_t>{258}));
  // "Ġw" merges, "orld" stays bytes.
  EXPECT_EQ(tok.encode("hello world"), (std::vector<int32_t>{259, 260, 'o', 'r', 'l', 'd'}));
  EXPECT_EQ(tok.encode(""), std::vector<int32_t>{});
  EXPECT_EQ(tok.vocabSize(), 263);
}

TEST(Tokenizer, AddedTokensLongestMatchFirst) {
  TempDir dir;
  const Tokenizer tok = load(dir, smallTokenizer());
  EXPECT_EQ(tok.encode("hello<|im_end|>"), (std::vector<int32_t>{259, 261}));
  EXPECT_EQ(tok.encode("<|im_end|>xhello"), (std::vector<int32_t>{262, 259}));
  EXPECT_EQ(tok.encode("<|im_end"), (std::vector<int32_t>{'<', '|', 'i', 'm', '_', 'e', 'n', 'd'}));
}

TEST(Tokenizer, DecodeAndSkipSpecial) {
  TempDir dir;
  const Tokenizer tok = load(dir, smallTokenizer());
  const auto ids = tok.encode("hello world<|im_end|>");
  EXPECT_EQ(tok.decode(ids), "hello world<|im_end|>");
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "hello world");
  // A lone continuation byte decodes to U+FFFD; unknown ids are skipped.
  EXPECT_EQ(tok.decode({0x80, 99999, 'a'}),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(tok.tokenToId("hello"), 259);
  EXPECT_EQ(tok.tokenToId("<|im_end|>"), 261);
  EXPECT_FALSE(tok.tokenToId("nope").has_value());
  EXPECT_EQ(tok.idToToken(260), "Ġw");
  EXPECT_TRUE(tok.isSpecial(261));
  EXPECT_FALSE(tok.isSpecial(262));
}

TEST(Tokenizer, NormalizesNfcAndReportsOffsets) {
  TempDir dir;
  const Tokenizer tok = load(dir, smallTokenizer());
  // "e" + combining acute is NFC "é" (C3 A9): the bytes of the composed form.
  EXPECT_EQ(tok.encode("e\xCC\x81"), (std::vector<int32_t>{0xC3, 0xA9}));
  std::vector<int32_t> ids;
  std::vector<size_t> starts;
  tok.encode("hi hello<|im_end|>", ids, &starts);
  EXPECT_EQ(ids, (std::vector<int32_t>{'h', 'i', ' ', 259, 261}));
  EXPECT_EQ(starts, (std::vector<size_t>{0, 1, 2, 3, 8}));
  // Offsets after a piece that normalization shortened still point into the input.
  ids.clear();
  starts.clear();
  tok.encode("e\xCC\x81 hello", ids, &starts);
  EXPECT_EQ(ids, (std::vector<int32_t>{0xC3, 0xA9, ' ', 259}));
  EXPECT_EQ(starts, (std::vector<size_t>{0, 0, 3, 4}));
}

// Found by fuzzing: offsets of a word taken from the word cache were recomputed from each
// id's vocabulary string, which need not be the bytes that made the token (here "xyz" shares
// "a"'s id), so a repeated word got offsets past the end of the text.
TEST(Tokenizer, CachedWordsKeepTheirOffsets) {
  TempDir dir;
  json j = smallTokenizer();
  j["model"]["vocab"]["xyz"] = 'a';
  const Tokenizer tok = load(dir, j);
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<int32_t> ids;
    std::vector<size_t> starts;
    tok.encode("ab\nab", ids, &starts);
    EXPECT_EQ(ids, (std::vector<int32_t>{'a', 'b', '\n', 'a', 'b'}));  // byte tokens: id = byte
    EXPECT_EQ(starts, (std::vector<size_t>{0, 1, 2, 3, 4})) << "pass " << pass;
  }
}

// Found by fuzzing: an added token whose id already names a vocabulary token. Hugging Face
// tokenizers gives such a token a new id, so Loom's ids would differ: refused.
TEST(Tokenizer, RefusesAnAddedTokenThatTakesAnotherTokensId) {
  TempDir dir;
  json j = smallTokenizer();
  j["added_tokens"][0]["id"] = 'q';
  EXPECT_NE(errorOf(dir, j).find("added_tokens[0] \"<|im_end|>\" has id 113, which is already the "
                                 "id of \"q\""),
            std::string::npos)
      << errorOf(dir, j);
  j = smallTokenizer();
  j["added_tokens"][1]["id"] = 261;  // two added tokens, one id
  EXPECT_NE(errorOf(dir, j).find("has id 261, which is already the id of \"<|im_end|>\""),
            std::string::npos)
      << errorOf(dir, j);
  j = smallTokenizer();
  j["added_tokens"][0]["content"] = "hello";  // its own vocabulary id (259) is kept: fine
  EXPECT_EQ(load(dir, j).encode("hello"), (std::vector<int32_t>{259}));
}

TEST(Tokenizer, RejectsInvalidUtf8WithOffset) {
  TempDir dir;
  const Tokenizer tok = load(dir, smallTokenizer());
  try {
    tok.encode(std::string("ab\xFF", 3));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("byte offset 2"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, ConcurrentEncodeAgrees) {
  TempDir dir;
  const Tokenizer tok = load(dir, smallTokenizer());
  std::string text;
  for (int i = 0; i < 200; ++i) text += "hello world " + std::to_string(i) + " hell\n";
  const auto expected = tok.encode(text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      bool all = true;
      for (int r = 0; r < 20; ++r) all = all && tok.encode(text) == expected;
      ok[t] = all ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, (std::vector<int>{1, 1, 1, 1}));
}

TEST(Tokenizer, LegacyMergeStringsEqualPairs) {
  TempDir dir;
  json j = smallTokenizer();
  json legacy = json::array();
  for (const auto& m : j["model"]["merges"]) {
    legacy.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  const Tokenizer pairs = load(dir, j, "a.json");
  j["model"]["merges"] = legacy;
  const Tokenizer strings = load(dir, j, "b.json");
  EXPECT_EQ(pairs.encode("hello world hell"), strings.encode("hello world hell"));
  EXPECT_NE(pairs.contentHash(), strings.contentHash());
}

TEST(Tokenizer, ContentHashIsSha256OfTheFile) {
  TempDir dir;
  const auto path = dir.write("tokenizer.json", smallTokenizer().dump());
  const Tokenizer tok = Tokenizer::fromFile(path);
  EXPECT_EQ(tok.contentHash().size(), 64u);
  const auto r = testing::runProcess({"sha256sum", path.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.substr(0, 64), tok.contentHash());
}

TEST(Tokenizer, ReadsSpecialIdsFromConfig) {
  TempDir dir;
  dir.write("tokenizer.json", smallTokenizer().dump());
  dir.write("tokenizer_config.json",
            R"({"eos_token": "<|im_end|>", "pad_token": {"content": "<|im_end|>x"},
                "bos_token": null})");
  const Tokenizer tok = Tokenizer::fromDir(dir.path());
  EXPECT_EQ(tok.eosId(), 261);
  EXPECT_EQ(tok.padId(), 262);
  EXPECT_FALSE(tok.bosId().has_value());
}

TEST(Tokenizer, SpecialTokenOutsideTheVocabularyIsRefusedByName) {
  TempDir dir;
  dir.write("tokenizer.json", smallTokenizer().dump());
  const auto config = dir.write("tokenizer_config.json", R"({"eos_token": "<|im_stop|>"})");
  try {
    Tokenizer::fromDir(dir.path());
    FAIL() << "an eos_token that is not in the vocabulary was accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(config.string()), std::string::npos) << what;
    EXPECT_NE(what.find("eos_token '<|im_stop|>' is not in the vocabulary"), std::string::npos)
        << what;
  }
  dir.write("tokenizer_config.json", R"({"eos_token": 5})");
  try {
    Tokenizer::fromDir(dir.path());
    FAIL() << "an eos_token that is a number was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(": eos_token should be the token's text"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("found 5"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, Utf8Helpers) {
  EXPECT_TRUE(isValidUtf8("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  size_t at = 0;
  EXPECT_FALSE(isValidUtf8("ab\xED\xA0\x80", &at));  // a surrogate
  EXPECT_EQ(at, 2u);
  EXPECT_FALSE(isValidUtf8("\xC0\xAF"));  // overlong
  // Maximal invalid subparts, as Rust's from_utf8_lossy: "\xF0\x9F" is one U+FFFD.
  EXPECT_EQ(toValidUtf8("a\xF0\x9F"
                        "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(toValidUtf8("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(toValidUtf8("\xE2\x82"), "\xEF\xBF\xBD");
}

// --- refusals ---------------------------------------------------------------------------

TEST(Tokenizer, MissingFileIsInputError) {
  TempDir dir;
  const auto path = dir.path() / "nope" / "tokenizer.json";
  try {
    Tokenizer::fromFile(path);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::fromDir(dir.path()), InputError);
}

TEST(Tokenizer, MalformedJsonNamesTheFile) {
  TempDir dir;
  const auto path = dir.write("tokenizer.json", "{\"model\": {\"type\": \"BPE\",");
  try {
    Tokenizer::fromFile(path);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
    EXPECT_NE(what.find("malformed JSON"), std::string::npos) << what;
  }
}

// Found by fuzzing: a number beyond a double's range is nlohmann's out_of_range, which escaped.
TEST(Tokenizer, NumberBeyondDoubleRangeIsMalformedJson) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const TempDir tok_dir;
    tok_dir.write("tokenizer.json", smallTokenizer().dump());
    tok_dir.write(name, "{\"model\": 1e400}");
    try {
      Tokenizer::fromDir(tok_dir.path());
      FAIL() << "expected InputError for " << name;
    } catch (const InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(name), std::string::npos) << what;
      EXPECT_NE(what.find("malformed JSON"), std::string::npos) << what;
    }
  }
}

TEST(Tokenizer, RefusesUnsupportedComponents) {
  TempDir dir;
  auto expectError = [&](json j, const std::string& needle) {
    const std::string what = errorOf(dir, j);
    EXPECT_NE(what.find(needle), std::string::npos) << "expected \"" << needle << "\" in: " << what;
    EXPECT_NE(what.find("tokenizer.json"), std::string::npos) << what;
  };
  json j = smallTokenizer();
  j["model"]["type"] = "WordPiece";
  expectError(j, "model.type is \"WordPiece\"");
  j = smallTokenizer();
  j["model"]["type"] = "Unigram";
  expectError(j, "model.type is \"Unigram\"");
  j = smallTokenizer();
  j["model"]["byte_fallback"] = true;
  expectError(j, "model.byte_fallback");
  j = smallTokenizer();
  j["model"]["dropout"] = 0.1;
  expectError(j, "model.dropout");
  j = smallTokenizer();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  expectError(j, "pre_tokenizer.type is \"Metaspace\"");
  j = smallTokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  expectError(j, "pre_tokenizer.pretokenizers[0].behavior is \"Removed\"");
  j = smallTokenizer();
  j["pre_tokenizer"] = nullptr;
  expectError(j, "no ByteLevel");
  j = smallTokenizer();
  j["normalizer"] = {{"type", "Lowercase"}};
  expectError(j, "normalizer.type is \"Lowercase\"");
  j = smallTokenizer();
  j["decoder"] = {{"type", "Metaspace"}};
  expectError(j, "decoder.type is \"Metaspace\"");
  j = smallTokenizer();
  j["model"]["merges"].push_back(json::array({"x", "nothere"}));
  expectError(j, "model.merges[5]");
  j = smallTokenizer();
  j["model"].erase("vocab");
  expectError(j, "missing key model.vocab");
  j = smallTokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expectError(j, "does not compile");
}

TEST(Tokenizer, PostProcessorGivesSpecialPrefixAndSuffix) {
  TempDir dir;
  json j = smallTokenizer();
  EXPECT_TRUE(load(dir, j).specialPrefix().empty());  // null: nothing added
  j["post_processor"] = {{"type", "ByteLevel"}, {"trim_offsets", false}};
  EXPECT_TRUE(load(dir, j).specialPrefix().empty());

  // Llama 3.1's shape: Sequence[ByteLevel, TemplateProcessing].
  const json special = {
      {"<|im_end|>", {{"id", "<|im_end|>"}, {"ids", {261}}, {"tokens", {"<|im_end|>"}}}},
      {"pair", {{"id", "pair"}, {"ids", {259, 260}}, {"tokens", {"hello", "Ġw"}}}}};
  const json templ = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<|im_end|>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "pair"}, {"type_id", 0}}}}})},
      {"pair", json::array()},
      {"special_tokens", special}};
  j["post_processor"] = {{"type", "Sequence"},
                         {"processors", json::array({{{"type", "ByteLevel"}}, templ})}};
  Tokenizer tok = load(dir, j);
  EXPECT_EQ(tok.specialPrefix(), (std::vector<int32_t>{261}));
  EXPECT_EQ(tok.specialSuffix(), (std::vector<int32_t>{259, 260}));

  // A later processor of a Sequence wraps what the earlier ones added.
  const json roberta = {{"type", "RobertaProcessing"},
                        {"cls", json::array({"he", 256})},
                        {"sep", json::array({"ll", 257})},
                        {"trim_offsets", true},
                        {"add_prefix_space", false}};
  j["post_processor"] = {{"type", "Sequence"}, {"processors", json::array({templ, roberta})}};
  tok = load(dir, j);
  EXPECT_EQ(tok.specialPrefix(), (std::vector<int32_t>{256, 261}));
  EXPECT_EQ(tok.specialSuffix(), (std::vector<int32_t>{259, 260, 257}));

  j["post_processor"] = {{"type", "BertProcessing"},
                         {"cls", json::array({"he", 256})},
                         {"sep", json::array({"ll", 257})}};
  tok = load(dir, j);
  EXPECT_EQ(tok.specialPrefix(), (std::vector<int32_t>{256}));
  EXPECT_EQ(tok.specialSuffix(), (std::vector<int32_t>{257}));
}

TEST(Tokenizer, RefusesUnsupportedPostProcessors) {
  TempDir dir;
  json j = smallTokenizer();
  j["post_processor"] = {{"type", "ClsAndSep"}};
  std::string what = errorOf(dir, j);
  EXPECT_NE(what.find("tokenizer.json: post_processor.type is \"ClsAndSep\""), std::string::npos)
      << what;
  j["post_processor"] = {{"type", "Sequence"},
                         {"processors", json::array({{{"type", "ByteLevel"}}, {{"type", "X"}}})}};
  what = errorOf(dir, j);
  EXPECT_NE(what.find("post_processor.processors[1].type is \"X\""), std::string::npos) << what;
  j["post_processor"] = {{"type", "BertProcessing"},
                         {"cls", json::array({"he", 9999})},
                         {"sep", json::array({"ll", 257})}};
  what = errorOf(dir, j);
  EXPECT_NE(what.find("post_processor.cls[1] is 9999"), std::string::npos) << what;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens", json::object()}};
  what = errorOf(dir, j);
  EXPECT_NE(what.find("post_processor.single[0] names \"<s>\""), std::string::npos) << what;
}

// Found by fuzzing: a vocabulary id of 94637075 made the loader allocate per-id tables of
// several GB. The same bound catches an added token's id above 2^31, which wrapped to a
// negative index (seen by reading the code; UBSan confirmed it).
TEST(Tokenizer, RefusesIdsOutOfRange) {
  TempDir dir;
  json j = smallTokenizer();
  j["model"]["vocab"]["x"] = 94637075;
  EXPECT_NE(
      errorOf(dir, j).find("model.vocab[\"x\"] is 94637075; ids are integers in [0, 4194303]"),
      std::string::npos)
      << errorOf(dir, j);
  j = smallTokenizer();
  j["added_tokens"][0]["id"] = 4294967295u;
  EXPECT_NE(errorOf(dir, j).find("added_tokens[0].id is 4294967295"), std::string::npos)
      << errorOf(dir, j);
  j = smallTokenizer();
  j["model"]["vocab"]["x"] = -1;
  EXPECT_NE(errorOf(dir, j).find("model.vocab[\"x\"] is -1"), std::string::npos) << errorOf(dir, j);
}

}  // namespace
}  // namespace loom

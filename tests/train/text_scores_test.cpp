// Text scores (train/text_scores): the tokenization, closed-form cases, and ROUGE-1/2/L F1 and
// BLEU-4 against rouge-score and nltk (tests/python/text_scores_reference.py) on fixed pairs.

#include "loom/train/text_scores.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "support/test_support.hpp"

namespace loom {
namespace {

using json = nlohmann::json;
using Tokens = std::vector<std::string>;

struct Pair {
  std::string candidate, reference;
};

// English (overlap, identical, disjoint, short, clipping, punctuation and case), Chinese,
// mixed, and empty sides.
const std::vector<Pair> kPairs = {
    {"the cat sat on the mat", "the cat is sitting on the mat"},
    {"The quick brown fox jumps over the lazy dog.",
     "The quick brown fox jumps over the lazy dog."},
    {"a quick brown dog jumps over the lazy fox", "the quick brown fox jumps over the lazy dog"},
    {"completely different words here", "nothing in common at all"},
    {"hello world", "hello there world, how are you today?"},
    {"yes", "yes"},
    {"yes no", "yes no"},
    {"Paris", "The capital of France is Paris."},
    {"the the the the the the the", "the cat is on the mat"},
    {"on the mat the cat the cat sat", "the cat sat on the mat"},
    {"Hello, World!!! It's 2024; e-mail: A.B@C.com", "hello world its 2024 e mail a b c com"},
    {"GPU memory: 80GB (H100) vs. 141GB (H200)", "The H200 has 141 GB of GPU memory."},
    {"To be, or not to be: that is the question.", "to be or not to be that is the question"},
    {"1 2 3 4 5 6 7 8 9 10", "10 9 8 7 6 5 4 3 2 1"},
    {"我喜欢吃苹果和香蕉", "我喜欢吃香蕉"},
    {"今天天气很好，我们去公园散步吧。", "今天天气很好，我们去公园散步吧。"},
    {"好", "好"},
    {"好", "你好世界"},
    {"北京是中国的首都", "上海是一座大城市"},
    {"我用 PyTorch 训练了一个 LLaMA 模型，loss 降到 0.5。", "我用PyTorch训练LLaMA模型, loss是0.5"},
    {"こんにちは世界、カタカナ", "こんにちは、世界"},
    {"안녕하세요 세계 hello", "안녕하세요 hello world"},
    {"café naïve résumé 42", "cafe naive resume 42"},
    {"", "the reference answer"},
    {"a candidate answer", ""},
    {"", ""},
    {"!!! ... ???", "punctuation only on the other side"},
    {"the answer is 42 the answer is 42 the answer is 42", "the answer is 42"},
};

TEST(TextScores, Tokenization) {
  EXPECT_EQ(scoreTokens("Hello, World! 你好 café 42"),
            (Tokens{"hello", "world", "你", "好", "caf", "42"}));
  EXPECT_EQ(scoreTokens("it's e-mail A.B@C.com x86_64"),
            (Tokens{"it", "s", "e", "mail", "a", "b", "c", "com", "x86", "64"}));
  EXPECT_EQ(scoreTokens("用PyTorch训练"), (Tokens{"用", "pytorch", "训", "练"}));
  EXPECT_EQ(scoreTokens("カタカナ한국"), (Tokens{"カ", "タ", "カ", "ナ", "한", "국"}));
  EXPECT_EQ(scoreTokens("，。！、"), Tokens{});  // CJK punctuation separates, is no token
  EXPECT_EQ(scoreTokens(""), Tokens{});
  EXPECT_EQ(scoreTokens("  \t\n"), Tokens{});
  // Invalid UTF-8 separates like punctuation: a stray continuation byte, a truncated
  // sequence, an overlong '/', a surrogate, and a lead byte at the very end.
  EXPECT_EQ(scoreTokens("ab\x80"
                        "cd\xE4\xBD"
                        "ef\xC0\xAF"
                        "gh\xED\xA0\x80"
                        "ij\xF0"),
            (Tokens{"ab", "cd", "ef", "gh", "ij"}));
}

TEST(TextScores, IdenticalTextsScoreOneAndDisjointZero) {
  for (const char* text :
       {"the quick brown fox jumps", "我们去公园散步", "Loom trains LLaMA 3 models."}) {
    SCOPED_TRACE(text);
    const TextScores s = scoreText(text, text);
    EXPECT_DOUBLE_EQ(s.rouge1, 1.0);
    EXPECT_DOUBLE_EQ(s.rouge2, 1.0);
    EXPECT_DOUBLE_EQ(s.rougeL, 1.0);
    EXPECT_DOUBLE_EQ(s.bleu4, 1.0);
  }
  const TextScores d = scoreText("alpha beta gamma delta", "one two three four five");
  EXPECT_EQ(d.rouge1, 0.0);
  EXPECT_EQ(d.rouge2, 0.0);
  EXPECT_EQ(d.rougeL, 0.0);
  EXPECT_EQ(d.bleu4, 0.0);
}

TEST(TextScores, ClosedForms) {
  // 2 identical tokens: p1 = p2 = 1, p3 and p4 have no n-gram (denominator 1) and are smoothed
  // by method3 to 1/2 and 1/4: BLEU = (1/2 * 1/4)^(1/4).
  EXPECT_NEAR(scoreText("yes no", "yes no").bleu4, std::pow(0.125, 0.25), 1e-15);
  // Unigram overlap 2 of 3 candidate and 6 reference tokens: p = 2/3, r = 1/3, F1 = 4/9;
  // the LCS is also 2.
  const TextScores s = scoreText("hello big world", "hello there world how are you");
  EXPECT_NEAR(s.rouge1, 4.0 / 9.0, 1e-15);
  EXPECT_NEAR(s.rougeL, 4.0 / 9.0, 1e-15);
  EXPECT_EQ(s.rouge2, 0.0);
  // An empty side scores zero everywhere.
  for (const auto& [c, r] : {Pair{"", "text"}, Pair{"text", ""}, Pair{"", ""}}) {
    const TextScores e = scoreText(c, r);
    EXPECT_EQ(e.rouge1 + e.rouge2 + e.rougeL + e.bleu4, 0.0);
  }
}

TEST(TextScores, MeanScores) {
  const TextScores m = meanScores({{0.5, 0.25, 1.0, 0.0}, {1.0, 0.75, 0.0, 0.5}});
  EXPECT_DOUBLE_EQ(m.rouge1, 0.75);
  EXPECT_DOUBLE_EQ(m.rouge2, 0.5);
  EXPECT_DOUBLE_EQ(m.rougeL, 0.5);
  EXPECT_DOUBLE_EQ(m.bleu4, 0.25);
  const TextScores z = meanScores({});
  EXPECT_EQ(z.rouge1 + z.rouge2 + z.rougeL + z.bleu4, 0.0);
}

TEST(TextScoresReference, EqualRougeScoreAndNltk) {
  testing::TempDir dir("loom-text-scores");
  json pairs = json::array();
  for (const auto& p : kPairs)
    pairs.push_back({{"candidate", p.candidate}, {"reference", p.reference}});
  const auto pairs_file = dir.write("pairs.json", pairs.dump());
  const auto py = testing::runPythonScript("text_scores_reference.py", {pairs_file.string()});
  ASSERT_EQ(py.exit_code, 0) << py.output;
  const json want = json::parse(py.output.substr(py.output.find('[')));
  ASSERT_EQ(want.size(), kPairs.size());
  // Both sides compute the same formula in double precision over the same counts, so they
  // differ by rounding only (~1e-16). 1e-6 is loose for that, yet far tighter than any
  // tokenization or counting difference: one token or n-gram more or less moves a score by
  // at least about 1/tokens^2 ~ 1e-3 for these lengths.
  constexpr double kTol = 1e-6;
  for (size_t i = 0; i < kPairs.size(); ++i) {
    SCOPED_TRACE("pair " + std::to_string(i) + ": '" + kPairs[i].candidate + "' vs '" +
                 kPairs[i].reference + "'");
    const TextScores got = scoreText(kPairs[i].candidate, kPairs[i].reference);
    EXPECT_NEAR(got.rouge1, want[i]["rouge1"].get<double>(), kTol);
    EXPECT_NEAR(got.rouge2, want[i]["rouge2"].get<double>(), kTol);
    EXPECT_NEAR(got.rougeL, want[i]["rougeL"].get<double>(), kTol);
    EXPECT_NEAR(got.bleu4, want[i]["bleu4"].get<double>(), kTol);
  }
}

}  // namespace
}  // namespace loom

#pragma once
// Scores of a generated text against a reference answer, as LLaMA-Factory's predict mode
// reports them: ROUGE-1/2/L F1 (Google's rouge-score 0.1.2) and BLEU-4 (nltk 3.10.4
// sentence_bleu with SmoothingFunction().method3). Plain C++, no libtorch.
//
// Both scores run on one tokenization, scoreTokens():
//   - the text is read as UTF-8; ASCII A-Z is lower-cased;
//   - a word token is a maximal run of [a-z0-9] (for ASCII text exactly rouge-score's default
//     tokenizer: lower-case, replace every character outside [a-z0-9] by a space, split);
//   - every CJK character is a token of its own (LLaMA-Factory scores Chinese by characters):
//       U+3040-U+309F   Hiragana
//       U+30A0-U+30FF   Katakana
//       U+3400-U+4DBF   CJK Unified Ideographs Extension A
//       U+4E00-U+9FFF   CJK Unified Ideographs
//       U+AC00-U+D7AF   Hangul Syllables
//       U+F900-U+FAFF   CJK Compatibility Ideographs
//       U+20000-U+3FFFF Supplementary and Tertiary Ideographic Planes (Extensions B-H, ...)
//   - every other character (punctuation, spaces, other non-ASCII such as the é of "café")
//     separates tokens and is dropped, as rouge-score drops it; so does each byte of invalid
//     UTF-8 (stray continuation bytes, truncated or overlong sequences, surrogates).
// Unlike rouge-score's default tokenizer, non-ASCII letters are never lower-cased (Python's
// str.lower() maps U+0130 'İ' to "i̇" and U+212A KELVIN SIGN to "k", which it would keep).

#include <string>
#include <vector>

namespace loom {

/// ROUGE-1/2/L F1 and BLEU-4 of one candidate against one reference, each in [0, 1]
/// (reports show them times 100).
struct TextScores {
  double rouge1 = 0;
  double rouge2 = 0;
  double rougeL = 0;
  double bleu4 = 0;
};

/// One sentence naming the tokenization, for reports (report.json, report.html).
inline constexpr char kScoreTokenization[] =
    "Tokens: ASCII lower-cased, runs of [a-z0-9] are words, every CJK character (Han, kana, "
    "Hangul) is a token of its own, anything else separates tokens.";

/// The tokens of `utf8_text` (see the comment at the top of this header).
///   "Hello, World! 你好 café 42" -> hello, world, 你, 好, caf, 42
std::vector<std::string> scoreTokens(const std::string& utf8_text);

/// The four scores of `candidate` (the generated text) against `reference`:
///   ROUGE-N F1: overlap = sum over n-grams of min(count in candidate, count in reference),
///     p = overlap / max(1, candidate n-grams), r = overlap / max(1, reference n-grams),
///     F1 = 2pr / (p + r), 0 when p + r = 0 (rouge_scorer._score_ngrams);
///   ROUGE-L F1: the same with the longest common subsequence length over the token lists,
///     0 when either side has no tokens (rouge_scorer._score_lcs);
///   BLEU-4: nltk sentence_bleu([reference], candidate, smoothing method3, weights 0.25 x 4):
///     clipped n-gram precisions over max(1, candidate n-grams); 0 when no unigram matches
///     (so also for an empty candidate or reference); a precision with no match becomes
///     1 / (2^k * its denominator), k = 1, 2, ... in order; times the brevity penalty
///     exp(1 - ref_len / cand_len) when the candidate is not longer than the reference.
/// Candidates shorter than 4 tokens get a smoothed (< 1) BLEU-4 even when identical.
TextScores scoreText(const std::string& candidate, const std::string& reference);

/// The mean of each score over `scores`; all zero when `scores` is empty.
TextScores meanScores(const std::vector<TextScores>& scores);

}  // namespace loom

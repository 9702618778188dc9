#include "loom/train/text_scores.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <unordered_map>

namespace loom {

namespace detail {
namespace {

constexpr uint32_t kInvalid = 0xFFFFFFFF;

/// Decodes the UTF-8 code point starting at text[i] and advances i past it. Invalid input
/// (stray continuation byte, truncated or overlong sequence, surrogate, > U+10FFFF) consumes
/// one byte and yields kInvalid.
uint32_t nextCodePoint(const std::string& text, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) {
    ++i;
    return lead;
  }
  int extra = 0;
  uint32_t cp = 0, min_cp = 0;
  if ((lead & 0xE0) == 0xC0) {
    extra = 1, cp = lead & 0x1F, min_cp = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    extra = 2, cp = lead & 0x0F, min_cp = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    extra = 3, cp = lead & 0x07, min_cp = 0x10000;
  } else {
    ++i;
    return kInvalid;
  }
  if (i + extra >= text.size()) {  // truncated at the end of the text
    ++i;
    return kInvalid;
  }
  for (int k = 1; k <= extra; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      ++i;
      return kInvalid;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return kInvalid;
  }
  i += extra + 1;
  return cp;
}

/// The CJK ranges listed in text_scores.hpp: each such character is a token of its own.
bool isCjk(uint32_t cp) {
  return (cp >= 0x3040 && cp <= 0x30FF) ||  // Hiragana, Katakana
         (cp >= 0x3400 && cp <= 0x4DBF) ||  // CJK Unified Ideographs Extension A
         (cp >= 0x4E00 && cp <= 0x9FFF) ||  // CJK Unified Ideographs
         (cp >= 0xAC00 && cp <= 0xD7AF) ||  // Hangul Syllables
         (cp >= 0xF900 && cp <= 0xFAFF) ||  // CJK Compatibility Ideographs
         (cp >= 0x20000 && cp <= 0x3FFFF);  // Supplementary/Tertiary Ideographic Planes
}

/// Tokens interned to ids, so that n-grams compare as integer vectors.
std::vector<int> tokenIds(const std::vector<std::string>& tokens,
                          std::unordered_map<std::string, int>& ids) {
  std::vector<int> out;
  out.reserve(tokens.size());
  for (const auto& t : tokens)
    out.push_back(ids.emplace(t, static_cast<int>(ids.size())).first->second);
  return out;
}

using NgramCounts = std::map<std::vector<int>, int64_t>;

/// rouge_scorer._create_ngrams / nltk's Counter(ngrams(tokens, n)): each n-gram's count.
NgramCounts countNgrams(const std::vector<int>& tokens, size_t n) {
  NgramCounts counts;
  for (size_t i = 0; i + n <= tokens.size(); ++i) {
    ++counts[std::vector<int>(tokens.begin() + i, tokens.begin() + i + n)];
  }
  return counts;
}

/// sum over n-grams of min(count in a, count in b): rouge_scorer._score_ngrams' intersection,
/// and with one reference also nltk modified_precision's clipped-count numerator.
int64_t overlap(const NgramCounts& a, const NgramCounts& b) {
  int64_t sum = 0;
  for (const auto& [ngram, count] : a) {
    const auto it = b.find(ngram);
    if (it != b.end()) sum += std::min(count, it->second);
  }
  return sum;
}

/// The number of n-grams of a token list of length `len`.
int64_t ngramCount(size_t len, size_t n) {
  return len >= n ? static_cast<int64_t>(len - n + 1) : 0;
}

/// rouge_score.scoring.fmeasure, same operation order.
double fmeasure(double precision, double recall) {
  return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

/// rouge_scorer._score_ngrams: F1 of the n-gram overlap.
double rougeN(const std::vector<int>& cand, const std::vector<int>& ref, size_t n) {
  const int64_t hits = overlap(countNgrams(ref, n), countNgrams(cand, n));
  const double precision = static_cast<double>(hits) /
                           static_cast<double>(std::max<int64_t>(ngramCount(cand.size(), n), 1));
  const double recall = static_cast<double>(hits) /
                        static_cast<double>(std::max<int64_t>(ngramCount(ref.size(), n), 1));
  return fmeasure(precision, recall);
}

/// rouge_scorer._score_lcs: F1 of the longest common subsequence (the _lcs_table dynamic
/// programme, kept to two rows).
double rougeL(const std::vector<int>& cand, const std::vector<int>& ref) {
  if (cand.empty() || ref.empty()) return 0.0;
  std::vector<int64_t> prev(cand.size() + 1, 0), cur(cand.size() + 1, 0);
  for (size_t i = 1; i <= ref.size(); ++i) {
    for (size_t j = 1; j <= cand.size(); ++j) {
      cur[j] = ref[i - 1] == cand[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  const double lcs = static_cast<double>(prev[cand.size()]);
  return fmeasure(lcs / static_cast<double>(cand.size()), lcs / static_cast<double>(ref.size()));
}

/// nltk.translate.bleu_score.sentence_bleu([ref], cand, smoothing_function=method3) with the
/// default weights (0.25,) * 4, i.e. corpus_bleu over one pair.
double bleu4(const std::vector<int>& cand, const std::vector<int>& ref) {
  constexpr size_t kOrder = 4;
  int64_t numerators[kOrder], denominators[kOrder];
  for (size_t n = 1; n <= kOrder; ++n) {
    // modified_precision: clipped counts over max(1, candidate n-grams), kept unnormalized
    // (Fraction(..., _normalize=False)): method3 uses this very denominator.
    numerators[n - 1] = overlap(countNgrams(cand, n), countNgrams(ref, n));
    denominators[n - 1] = std::max<int64_t>(1, ngramCount(cand.size(), n));
  }
  // corpus_bleu returns 0 before smoothing when no unigram matches (this covers an empty
  // candidate or reference; brevity_penalty's 0 for an empty candidate is never reached).
  if (numerators[0] == 0) return 0.0;
  // SmoothingFunction.method3 (NIST geometric sequence): the k-th precision without a match,
  // in order of n, becomes 1 / (2^k * denominator).
  double log_sum = 0;
  int64_t k = 1;
  for (size_t n = 0; n < kOrder; ++n) {
    double p;
    if (numerators[n] == 0) {
      p = 1.0 / static_cast<double>((int64_t{1} << k) * denominators[n]);
      ++k;
    } else {
      p = static_cast<double>(numerators[n]) / static_cast<double>(denominators[n]);
    }
    log_sum += 0.25 * std::log(p);  // every smoothed p_i > 0, so none is skipped
  }
  // closest_ref_length with one reference is its length; brevity_penalty.
  const double hyp_len = static_cast<double>(cand.size()),
               ref_len = static_cast<double>(ref.size());
  const double bp = cand.size() > ref.size() ? 1.0 : std::exp(1.0 - ref_len / hyp_len);
  return bp * std::exp(log_sum);
}

}  // namespace
}  // namespace detail

std::vector<std::string> scoreTokens(const std::string& utf8_text) {
  std::vector<std::string> tokens;
  std::string word;  // the current run of [a-z0-9]
  const auto flush = [&] {
    if (!word.empty()) tokens.push_back(std::move(word));
    word.clear();
  };
  size_t i = 0;
  while (i < utf8_text.size()) {
    const size_t start = i;
    const uint32_t cp = detail::nextCodePoint(utf8_text, i);
    if (cp >= 'A' && cp <= 'Z') {
      word.push_back(static_cast<char>(cp - 'A' + 'a'));
    } else if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
      word.push_back(static_cast<char>(cp));
    } else {
      flush();  // anything else ends a word (rouge-score's [^a-z0-9]+ -> " ")
      if (cp != detail::kInvalid && detail::isCjk(cp))
        tokens.push_back(utf8_text.substr(start, i - start));
    }
  }
  flush();
  return tokens;
}

TextScores scoreText(const std::string& candidate, const std::string& reference) {
  std::unordered_map<std::string, int> ids;
  const auto cand = detail::tokenIds(scoreTokens(candidate), ids);
  const auto ref = detail::tokenIds(scoreTokens(reference), ids);
  TextScores s;
  s.rouge1 = detail::rougeN(cand, ref, 1);
  s.rouge2 = detail::rougeN(cand, ref, 2);
  s.rougeL = detail::rougeL(cand, ref);
  s.bleu4 = detail::bleu4(cand, ref);
  return s;
}

TextScores meanScores(const std::vector<TextScores>& scores) {
  TextScores mean;
  if (scores.empty()) return mean;
  for (const auto& s : scores) {
    mean.rouge1 += s.rouge1;
    mean.rouge2 += s.rouge2;
    mean.rougeL += s.rougeL;
    mean.bleu4 += s.bleu4;
  }
  const double count = static_cast<double>(scores.size());
  mean.rouge1 /= count;
  mean.rouge2 /= count;
  mean.rougeL /= count;
  mean.bleu4 /= count;
  return mean;
}

}  // namespace loom

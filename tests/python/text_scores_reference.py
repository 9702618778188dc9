"""Reference text scores for Loom's train/text_scores (tests/train/text_scores_test.cpp,
tests/main/compare_command_test.cpp).

    text_scores_reference.py PAIRS_JSON

PAIRS_JSON is a list of {"candidate", "reference"}. Prints a JSON list, one
{"rouge1", "rouge2", "rougeL", "bleu4"} per pair, each in [0, 1]: ROUGE-1/2/L F1 from Google's
rouge-score (RougeScorer, no stemmer) and BLEU-4 from nltk's sentence_bleu with
SmoothingFunction().method3, as LLaMA-Factory's predict mode computes them, both on the
tokenization documented in include/loom/train/text_scores.hpp, written again here: ASCII
lower-cased, runs of [a-z0-9] are words, each CJK character is a token, anything else
separates tokens. For pure-ASCII text it is checked against rouge-score's own tokenizer.
"""

import json
import sys

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_score import rouge_scorer, tokenizers

# The CJK ranges of text_scores.hpp: each such character is a token of its own.
CJK_RANGES = [
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x3400, 0x4DBF),    # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),    # CJK Unified Ideographs
    (0xAC00, 0xD7AF),    # Hangul Syllables
    (0xF900, 0xFAFF),    # CJK Compatibility Ideographs
    (0x20000, 0x3FFFF),  # Supplementary and Tertiary Ideographic Planes
]
WORD_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")


def is_cjk(ch):
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


class ScoreTokenizer(tokenizers.Tokenizer):
    """The documented tokenization, character by character."""

    def tokenize(self, text):
        tokens, word = [], []
        for ch in text:
            if "A" <= ch <= "Z":
                ch = ch.lower()
            if ch in WORD_CHARS:
                word.append(ch)
                continue
            if word:
                tokens.append("".join(word))
                word = []
            if is_cjk(ch):
                tokens.append(ch)
        if word:
            tokens.append("".join(word))
        return tokens


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        pairs = json.load(f)
    tokenizer = ScoreTokenizer()
    rouge_default = tokenizers.DefaultTokenizer(use_stemmer=False)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False,
                                      tokenizer=tokenizer)
    smoothing = SmoothingFunction().method3
    out = []
    for pair in pairs:
        candidate, reference = pair["candidate"], pair["reference"]
        for text in (candidate, reference):
            if text.isascii():
                assert tokenizer.tokenize(text) == rouge_default.tokenize(text), text
        rouge = scorer.score(reference, candidate)  # score(target, prediction)
        candidate_tokens = tokenizer.tokenize(candidate)
        reference_tokens = tokenizer.tokenize(reference)
        bleu = sentence_bleu([reference_tokens], candidate_tokens, smoothing_function=smoothing)
        out.append({
            "rouge1": rouge["rouge1"].fmeasure,
            "rouge2": rouge["rouge2"].fmeasure,
            "rougeL": rouge["rougeL"].fmeasure,
            "bleu4": float(bleu),
        })
    print(json.dumps(out))


if __name__ == "__main__":
    main()

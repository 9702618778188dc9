"""Reference data for Loom's tokenizer tests, computed with the `tokenizers` library.

    tokenizer_reference.py train OUT_DIR
        Trains small byte-level BPE tokenizers on a generated multilingual corpus and saves
        each as OUT_DIR/<variant>/tokenizer.json:
          qwen         NFC + Split(Qwen regex, Isolated) + ByteLevel(use_regex=False), like Qwen2/3
          qwen_legacy  the same file with merges written as "a b" strings
          llama3       Split(Llama 3 regex) + ByteLevel, no normalizer, ignore_merges=True
          gpt2         NFKC (in a Sequence) + ByteLevel(use_regex=True, add_prefix_space=True),
                       with added tokens using lstrip / rstrip / single_word / normalized
    tokenizer_reference.py cases TOKENIZER_JSON OUT_JSON [COUNT]
        Writes COUNT (default 2500) deterministic test strings with the library's ids
        (add_special_tokens=False) and decodings.
    tokenizer_reference.py special TOKENIZER_JSON OUT_JSON
        Writes a few strings with the library's ids without and with the post-processor's
        special tokens (add_special_tokens=False / True).

Everything is deterministic (fixed seeds); no network access.
"""

import json
import random
import sys
import unicodedata
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, trainers

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. I don't think I'LL go; she's sure "
    "they're RIGHT, we've seen it, you'd know, I'm here. It's 3:45pm on 2024-05-17 and "
    "the price is $1,234.56 (approx. 12%). Hello, World! HELLO WORLD hello world. "
    "Tokenizers split text into words, numbers and punctuation... e.g. U.S.A., Dr. Smith"
).split(" ")
CHINESE = "我们今天学习自然语言处理模型的训练方法，数据并行在不同显卡上运行。你好世界！这是一个测试：中文、标点和数字123。"
JAPANESE = "これは日本語のテストです。カタカナとひらがな、漢字を混ぜます。東京タワーへ行きましょう！ガギグゲゴ、パピプペポ。"
KOREAN = "안녕하세요 세계. 한국어 문장을 토큰화합니다."
OTHER_SCRIPTS = [
    "Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới, Tiếng Việt có dấu", "Ünïcödé façade naïve café",
    "∑∫∂√∞ ≤ ≥ ≠ ±", "┌──┐│  │└──┘", "ℕ ℤ ℚ ℝ ℂ", "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３",
]
CODE = [
    "def main(argv):\n    for i in range(10):\n        print(f\"{i:>3}\")\n    return 0\n",
    "int main(int argc, char** argv) {\r\n\tstd::vector<int> v{1, 2, 3};\r\n\treturn v.size();\r\n}\r\n",
    '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b\\n"}}',
    "if (x != y && z >= 0x1F) { y <<= 2; } // comment\n\n\n",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name DESC;",
    "    \t  indented\t\ttabs   \n  \n\t\n",
    "<div class=\"a\"><p>Hi&nbsp;there</p></div>",
    "$ ls -la /usr/bin | grep -E '^-rwx' > out.txt 2>&1",
]
EMOJI = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "🤖 + 🧠 = 🚀", "✨🎉", "1️⃣", "🫠",
]
SPECIAL = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
    "<|im_sta", "<|im_start|", "<|", "|>", "<||>", "<|im_start|><|im_end|>", "[MASK]",
    "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
]
WHITESPACE = [
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000", "\u2028",
    "\u2029", "\u180e", "\u200b", "\u000b", "\u000c", "\u0085", "\u001c", "\u2009", "\u202f",
    "\ufeff", "    \n", "\n    ", " \t \r\n\t ",
]
ODD = [
    "\u0301", "\u0301\u0301a", "\ufffd", "\u200d", "\u200c", "a\u200db", "\ue000\uf8ff",
    "\U0010fffd", "\uffff", "\ufffe", "\u0378", "\U000e0001", "\u034f", "e\u0301",
    "\u00e9", "A\u030a", "\u212b", "\u00c5", "a\u0323\u0302", "a\u0302\u0323",
    "\u1100\u1161\u11a8", "\uac01", "\u0915\u093c", "\u0929", "\u304b\u3099", "\u304c",
    "\uff76\uff9e", "\u1e9b\u0323", "\u00bd", "\ufb01", "\u2460", "\u017f", "'\u017f",
    "'S", "'LL", "'Re", "'VE", "'M", "'D", "'T", "\u212a", "\u0130", "\u00df",
    # Unicode 15 letters and numbers (newer than some PCRE2 builds' tables).
    "\U0001d2c0\U0001d2c1", "1\U0001d2c5", "\U00031350\U00031351", "\U00011f04", "\U0001e4d0",
]
DIGITS = ["0", "7", "42", "1234567890", "3.14159", "1,000,000", "٣٤٥", "१२३", "Ⅻ", "²³", "0x7fff"]


def fragment(rng: random.Random) -> str:
    kind = rng.randrange(14)
    if kind == 0:
        n = rng.randint(1, 12)
        return " ".join(rng.choice(ENGLISH) for _ in range(n))
    if kind == 1:
        a = rng.randrange(len(CHINESE))
        return CHINESE[a : a + rng.randint(1, 20)]
    if kind == 2:
        a = rng.randrange(len(JAPANESE))
        return JAPANESE[a : a + rng.randint(1, 20)]
    if kind == 3:
        return rng.choice(OTHER_SCRIPTS + [KOREAN])
    if kind == 4:
        c = rng.choice(CODE)
        a = rng.randrange(len(c))
        return c[a : a + rng.randint(1, 60)]
    if kind == 5:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
    if kind == 6:
        return rng.choice(SPECIAL)
    if kind == 7:
        return "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(1, 4)))
    if kind == 8:
        return "".join(rng.choice(ODD) for _ in range(rng.randint(1, 3)))
    if kind == 9:
        return rng.choice(DIGITS) if rng.random() < 0.5 else str(rng.randrange(10 ** rng.randint(1, 15)))
    if kind == 10:
        # Random code points from the Basic Multilingual Plane (assigned ones only, and no
        # surrogates), plus a few from the supplementary planes.
        out = []
        for _ in range(rng.randint(1, 6)):
            while True:
                cp = rng.randrange(0x20, 0x10000) if rng.random() < 0.9 else rng.randrange(0x10000, 0x30000)
                ch = chr(cp)
                if 0xD800 <= cp <= 0xDFFF or unicodedata.category(ch) == "Cn":
                    continue
                out.append(ch)
                break
        return "".join(out)
    if kind == 11:
        return unicodedata.normalize(rng.choice(["NFD", "NFKD"]), rng.choice(OTHER_SCRIPTS + [KOREAN, JAPANESE[:12]]))
    if kind == 12:
        return rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "don't", "I'LL", "WE'VE", "it'S"])
    return rng.choice([",", ".", "!", "?", "...", "--", "()", "[]", "{}", "''", '"', "`", "@#$%^&*"])


def long_string(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return "a" * rng.randint(200, 2000)
    if kind == 1:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(300, 1500)))
    if kind == 2:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(100, 600)))
    if kind == 3:
        return CHINESE * rng.randint(3, 10)
    if kind == 4:
        return " " * rng.randint(50, 500) + "x" + "\n" * rng.randint(10, 100)
    return "".join(rng.choice(EMOJI) for _ in range(rng.randint(50, 200)))


def make_strings(count: int, seed: int = 1234) -> list:
    rng = random.Random(seed)
    out = ["", " ", "a", "\n", "<|im_start|>", "<|endoftext|>", "Hello world", "don't I'LL"]
    while len(out) < count:
        if rng.random() < 0.04:
            out.append(long_string(rng))
            continue
        sep = rng.choice(["", " ", "", "\n", " "])
        out.append(sep.join(fragment(rng) for _ in range(rng.randint(1, 8))))
    return out[:count]


def corpus(lines: int = 4000) -> list:
    rng = random.Random(99)
    return [" ".join(fragment(rng) for _ in range(rng.randint(2, 12))) for _ in range(lines)]


def train(out_dir: Path) -> None:
    text = corpus()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

    def new_trainer(size: int):
        return trainers.BpeTrainer(
            vocab_size=size,
            min_frequency=2,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )

    variants = {}

    qwen = Tokenizer(models.BPE())
    qwen.normalizer = normalizers.NFC()
    qwen.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    qwen.decoder = decoders.ByteLevel()
    qwen.train_from_iterator(text, new_trainer(2000))
    qwen.add_tokens(
        [
            AddedToken("<think>", normalized=False, special=False),
            AddedToken("</think>", normalized=False, special=False),
            AddedToken("<tool_call>", normalized=True, special=False),
        ]
    )
    variants["qwen"] = qwen

    llama = Tokenizer(models.BPE(ignore_merges=True))
    llama.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    llama.decoder = decoders.ByteLevel()
    llama.train_from_iterator(text, new_trainer(2500))
    llama.add_special_tokens(["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>"])
    variants["llama3"] = llama

    gpt2 = Tokenizer(models.BPE())
    gpt2.normalizer = normalizers.Sequence([normalizers.NFKC()])
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    gpt2.decoder = decoders.ByteLevel()
    gpt2.train_from_iterator(text, new_trainer(1500))
    gpt2.add_tokens(
        [
            AddedToken("[MASK]", lstrip=True, rstrip=True, special=True, normalized=False),
            AddedToken("ｆｕｌｌ", normalized=True, special=False),
            AddedToken("Hello", single_word=True, normalized=False, special=False),
            AddedToken("<think>", rstrip=True, normalized=False, special=False),
        ]
    )
    variants["gpt2"] = gpt2

    for name, tok in variants.items():
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        tok.save(str(out_dir / name / "tokenizer.json"))

    # The same Qwen-style tokenizer with merges in the legacy "a b" string form.
    data = json.loads((out_dir / "qwen" / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    (out_dir / "qwen_legacy").mkdir(parents=True, exist_ok=True)
    (out_dir / "qwen_legacy" / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    # Loading it back must give the same tokenizer: the legacy form is read by the library.
    check = Tokenizer.from_file(str(out_dir / "qwen_legacy" / "tokenizer.json"))
    assert check.encode("hello world don't").ids == qwen.encode("hello world don't").ids


def cases(tokenizer_json: str, out_json: str, count: int) -> None:
    tok = Tokenizer.from_file(tokenizer_json)
    strings = make_strings(count)
    encodings = tok.encode_batch(strings, add_special_tokens=False)
    out = []
    for text, enc in zip(strings, encodings):
        ids = enc.ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        out.append(
            {
                "text": text,
                "ids": ids,
                "decoded": decoded,
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
                "nfc": unicodedata.normalize("NFC", text),
                "is_nfc": unicodedata.normalize("NFC", text) == text,
            }
        )
    Path(out_json).write_text(json.dumps({"cases": out}, ensure_ascii=True), encoding="utf-8")
    print(f"{len(out)} cases, {sum(len(c['ids']) for c in out)} tokens -> {out_json}")


SPECIAL_CASE_STRINGS = ["", "Hello world", " leading space", "<|im_start|>user\nHi<|im_end|>",
                        "Grüße, 世界! 🚀", "<|begin_of_text|>already there"]


def special(tokenizer_json: str, out_json: str) -> None:
    tok = Tokenizer.from_file(tokenizer_json)
    out = [
        {
            "text": text,
            "ids": tok.encode(text, add_special_tokens=False).ids,
            "ids_with_special": tok.encode(text, add_special_tokens=True).ids,
        }
        for text in SPECIAL_CASE_STRINGS
    ]
    Path(out_json).write_text(json.dumps({"cases": out}, ensure_ascii=True), encoding="utf-8")


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "train":
        train(Path(sys.argv[2]))
        return 0
    if len(sys.argv) >= 4 and sys.argv[1] == "cases":
        count = int(sys.argv[4]) if len(sys.argv) >= 5 else 2500
        cases(sys.argv[2], sys.argv[3], count)
        return 0
    if len(sys.argv) >= 4 and sys.argv[1] == "special":
        special(sys.argv[2], sys.argv[3])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

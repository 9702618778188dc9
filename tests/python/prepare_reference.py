"""Reference checks for `trainer prepare`: the token ids it writes must equal what the
`tokenizers` library (and, for chat templates, transformers' apply_chat_template) gives.

    prepare_reference.py corpus OUT_DIR [COUNT]
        Writes alpaca.jsonl, chat.jsonl, template.jsonl and text.jsonl (COUNT records each,
        default 150) built from tokenizer_reference.py's varied strings (scripts, emoji, code,
        whitespace runs, special tokens inside text).
    prepare_reference.py check --h5 FILE --input JSONL --format F --tokenizer DIR
                               [--seq-len N] [--prompt-template S --completion-template S]
        Recomputes every sample of FILE from JSONL with the reference libraries, following the
        layout documented in include/loom/data/prepare.hpp, and compares ids id for id and the
        loss masks (exactly for text/template; for chat/alpaca, that the targets decode to the
        assistant turns and their closing tokens). Exit 0 when all agree, 1 otherwise.

Offline and deterministic.
"""

import argparse
import json
import random
import re
import sys
import unicodedata
from pathlib import Path

import h5py
import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_reference import make_strings  # noqa: E402


def corpus(out_dir: Path, count: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(99)
    strings = [s for s in make_strings(4 * count + 100, seed=4321) if s]

    # Chat text without special tokens or think tags, so that the targets can be checked by
    # finding each answer and closing token in them.
    plain = [s for s in strings if "<|" not in s and "think>" not in s]

    def pick(chat: bool = False) -> str:
        return rng.choice(plain if chat else strings)

    with open(out_dir / "alpaca.jsonl", "w", encoding="utf-8") as f:
        for i in range(count):
            r = {"instruction": pick(True), "output": pick(True)}
            if i % 2:
                r["input"] = pick(True)
            f.write(json.dumps(r, ensure_ascii=i % 3 == 0) + "\n")
    with open(out_dir / "chat.jsonl", "w", encoding="utf-8") as f:
        for i in range(count):
            messages = []
            if i % 4 == 0:
                messages.append({"role": "system", "content": pick(True)})
            for _ in range(1 + i % 3):
                messages.append({"role": "user", "content": pick(True)})
                messages.append({"role": "assistant", "content": pick(True)})
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    with open(out_dir / "template.jsonl", "w", encoding="utf-8") as f:
        for i in range(count):
            r = {"Question": pick(), "N": i, "Response": pick()}
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(out_dir / "text.jsonl", "w", encoding="utf-8") as f:
        for i in range(count):
            doc = "".join(pick() for _ in range(1 + i % 12))
            f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
    print(f"{count} records per format -> {out_dir}")


def render_template(template: str, record: dict) -> str:
    def field(m):
        v = record[m.group(1)]
        return v if isinstance(v, str) else json.dumps(v)

    # {{ and }} are literal braces; {Name} a field.
    parts = re.split(r"(\{\{|\}\}|\{[^{}]+\})", template)
    out = []
    for p in parts:
        if p == "{{":
            out.append("{")
        elif p == "}}":
            out.append("}")
        elif p.startswith("{") and p.endswith("}") and len(p) > 2:
            out.append(field(re.match(r"\{(.+)\}", p)))
        else:
            out.append(p)
    return "".join(out)


def expected_samples(args, tok: Tokenizer):
    """Yields (ids, mask or None, loss_text or None) per stored sample, in order."""
    config = json.loads((Path(args.tokenizer) / "tokenizer_config.json").read_text())
    eos_token = config.get("eos_token")
    if isinstance(eos_token, dict):
        eos_token = eos_token["content"]
    chat = None
    if args.format in ("chat", "alpaca"):
        from transformers import AutoTokenizer

        chat = AutoTokenizer.from_pretrained(args.tokenizer)
    with open(args.input, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if args.format == "text":
                if not r["text"]:
                    continue
                # The post-processor's specials (Llama 3's <|begin_of_text|>) and one EOS.
                # EOS unless the post-processor's suffix already ends with it.
                ids = tok.encode(r["text"], add_special_tokens=True).ids
                plain = tok.encode(r["text"], add_special_tokens=False).ids
                start = next(k for k in range(len(ids) - len(plain) + 1) if ids[k:k + len(plain)] == plain)
                suffix = ids[start + len(plain):]
                if not suffix or suffix[-1] != tok.token_to_id(eos_token):
                    ids.append(tok.token_to_id(eos_token))
                step = args.seq_len - 1
                begin = 0
                while True:
                    end = min(len(ids), begin + args.seq_len)
                    piece = ids[begin:end]
                    yield piece, [0] + [1] * (len(piece) - 1), None
                    if end == len(ids):
                        break
                    begin += step
            elif args.format == "template":
                prompt = render_template(args.prompt_template, r)
                completion = render_template(args.completion_template, r)
                if not completion:
                    continue
                # BOS (when the post-processor adds one) opens the prompt.
                p = tok.encode(prompt, add_special_tokens=True).ids
                c = tok.encode(completion, add_special_tokens=False).ids + [tok.token_to_id(eos_token)]
                mask = [0] * len(p) + [1] * len(c)
                mask[0] = 0
                yield (p + c)[: args.seq_len], mask[: args.seq_len], None
            else:
                if args.format == "alpaca":
                    user = r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")
                    messages = [{"role": "user", "content": user},
                                {"role": "assistant", "content": r["output"]}]
                    if not r["output"]:
                        continue
                else:
                    messages = r["messages"]
                    if not any(m["role"] == "assistant" and m["content"] for m in messages):
                        continue
                text = chat.apply_chat_template(messages, tokenize=False)
                ids = tok.encode(text, add_special_tokens=False).ids
                yield ids[: args.seq_len], None, messages


def check(args) -> int:
    tok = Tokenizer.from_file(str(Path(args.tokenizer) / "tokenizer.json"))
    with h5py.File(args.h5, "r") as h5:
        offsets = h5["offsets"][:]
        tokens = h5["tokens"][:]
        masks = h5["loss_mask"][:]
        vocab_size = int(h5.attrs["vocab_size"])
    n = len(offsets) - 1
    bad = 0
    i = 0
    for ids, mask, messages in expected_samples(args, tok):
        if i >= n:
            print(f"MISMATCH: the file has {n} samples, the reference more")
            return 1
        got = tokens[offsets[i]:offsets[i + 1]].tolist()
        got_mask = masks[offsets[i]:offsets[i + 1]].tolist()
        if got != ids:
            bad += 1
            if bad <= 5:
                k = next((j for j in range(min(len(got), len(ids))) if got[j] != ids[j]), None)
                print(f"MISMATCH sample {i}: ids differ at {k}: loom {got[:40]}... reference {ids[:40]}...")
        elif mask is not None and got_mask != mask:
            bad += 1
            if bad <= 5:
                print(f"MISMATCH sample {i}: mask loom {got_mask} reference {mask}")
        elif messages is not None:
            # Both sides in NFC: Qwen's tokenizer normalizes to NFC, Llama 3's keeps the text as
            # it is, and the answers may be in either form.
            targets = unicodedata.normalize(
                "NFC", tok.decode([t for t, m in zip(got, got_mask) if m], skip_special_tokens=False))
            closing = "<|im_end|>" if "<|im_end|>" in targets else "<|eot_id|>"
            answers = [unicodedata.normalize("NFC", m["content"]).strip()
                       for m in messages if m["role"] == "assistant"]
            missing = [a for a in answers if a not in targets]
            if targets.count(closing) != len(answers) or missing:
                bad += 1
                if bad <= 5:
                    print(f"MISMATCH sample {i}: targets {targets!r} do not hold the answers {answers!r}")
        i += 1
    if i != n:
        print(f"MISMATCH: the file has {n} samples, the reference {i}")
        return 1
    if int(np.max(tokens, initial=0)) >= vocab_size:
        print("MISMATCH: a token id is >= vocab_size")
        return 1
    print(f"{args.format}: {n} samples, {len(tokens)} tokens compared, {bad} mismatches")
    return 1 if bad else 0


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "corpus":
        corpus(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 150)
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("mode", choices=["check"])
    ap.add_argument("--h5", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--format", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--prompt-template", default="")
    ap.add_argument("--completion-template", default="")
    return check(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())

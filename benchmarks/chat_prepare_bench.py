#!/usr/bin/env python3
"""Throughput of `trainer prepare --format chat` beside transformers' apply_chat_template, on
the same conversations in the same run.

    .venv/bin/python benchmarks/chat_prepare_bench.py --trainer build/src/trainer \\
        --tokenizer ../shared/tokenizers/qwen3 [--conversations 20000]

The corpus is a JSONL file of {"messages": [...]} conversations written to --work: 1 to 3
user/assistant exchanges each, some with a system message, their texts cut from the Python
environment's source and documentation files (as benchmarks/prepare_bench.py builds its
corpus). The sides:
  transformers   tokenizer.apply_chat_template(messages, tokenize=True) per conversation, the
                 ids only (no loss mask), in 1 or N processes (multiprocessing.Pool): what a
                 Python pipeline does before training (TRL / LLaMA-Factory call the same)
  loom own       `trainer prepare --format chat`: the tokenizer's own chat template through
                 Loom's Jinja renderer, with loss masks (2 extra renders per assistant turn to
                 find the spans, chat_renderer.hpp), HDF5 written; wall time
  loom built-in  the same with --chat-template qwen (the native Qwen renderer, no Jinja)
Token counts are checked equal between transformers and both Loom runs.
"""
import argparse
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_corpus(path: Path, count: int) -> None:
    site = Path(sys.prefix) / "lib"
    files = sorted(p for p in site.rglob("*") if p.suffix in (".py", ".md", ".rst"))
    rng = random.Random(7)
    pieces = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for begin in range(0, len(text) - 200, 600):
            pieces.append(text[begin:begin + rng.randint(80, 900)])
        if len(pieces) > 8 * count:
            break
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            messages = []
            if i % 4 == 0:
                messages.append({"role": "system", "content": "You are a careful assistant."})
            for _ in range(rng.randint(1, 3)):
                messages.append({"role": "user", "content": rng.choice(pieces)})
                messages.append({"role": "assistant", "content": rng.choice(pieces)})
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


_TOK = None


def _init(folder):
    global _TOK
    from transformers import AutoTokenizer
    _TOK = AutoTokenizer.from_pretrained(folder)


def _count(messages):
    return len(_TOK.apply_chat_template(messages, tokenize=True, return_dict=False))


def run_transformers(folder: Path, corpus: Path, processes: int) -> dict:
    with open(corpus, encoding="utf-8") as f:
        conversations = [json.loads(line)["messages"] for line in f if line.strip()]
    t = time.perf_counter()
    if processes == 1:
        _init(str(folder))
        tokens = sum(_count(m) for m in conversations)
    else:
        with multiprocessing.Pool(processes, initializer=_init, initargs=(str(folder),)) as pool:
            tokens = sum(pool.map(_count, conversations, chunksize=64))
    return {"seconds": time.perf_counter() - t, "tokens": tokens}


def run_loom(trainer: str, folder: Path, corpus: Path, threads: int, work: Path, template: str) -> dict:
    out = work / f"chat-{threads}.h5"
    cmd = [trainer, "prepare", "--no-progress", "--tokenizer", str(folder), "--input", str(corpus),
           "--format", "chat", "--output", str(out), "--threads", str(threads),
           "--seq-len", "1000000000", "--chat-template", template]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"trainer prepare failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    tokens = int(re.search(r"samples \d+, tokens (\d+)", r.stdout).group(1))
    out.unlink(missing_ok=True)
    return {"seconds": dt, "tokens": tokens}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainer", default=str(ROOT / "build" / "src" / "trainer"))
    ap.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared" / "tokenizers" / "qwen3")
    ap.add_argument("--conversations", type=int, default=20000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/loom-chat-bench"))
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="the 'all threads' count")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / f"chat-{args.conversations}.jsonl"
    if not corpus.exists():
        build_corpus(corpus, args.conversations)
    size = corpus.stat().st_size
    print(f"corpus {corpus}: {args.conversations} conversations, {size / 1e6:.1f} MB; "
          f"tokenizer {args.tokenizer}; {os.cpu_count()} cores")
    rows = []
    for threads in sorted({1, args.threads}):
        ref = run_transformers(args.tokenizer, corpus, threads)
        rows.append(("transformers apply_chat_template", threads, ref))
        for name, template in (("loom own template", "auto"), ("loom built-in qwen", "qwen")):
            loom = run_loom(args.trainer, args.tokenizer, corpus, threads, args.work, template)
            if loom["tokens"] != ref["tokens"]:
                sys.exit(f"token counts differ: {name} {loom['tokens']}, transformers {ref['tokens']}")
            rows.append((name, threads, loom))
    tokens = rows[0][2]["tokens"]
    print(f"{tokens} tokens (equal on every side)\n")
    print(f"{'implementation':34} {'threads':>7} {'seconds':>8} {'conv/s':>8} {'MB/s':>7} {'Mtok/s':>7}")
    for name, threads, r in rows:
        s = r["seconds"]
        print(f"{name:34} {threads:7d} {s:8.2f} {args.conversations / s:8.0f} {size / s / 1e6:7.2f} "
              f"{tokens / s / 1e6:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Throughput of `trainer prepare` beside the `tokenizers` library's batch encoding, on the
same corpus in the same run, and (with --memory) the peak memory of the trainer.

    .venv/bin/python benchmarks/prepare_bench.py --trainer build/src/trainer \\
        --tokenizer ../shared/tokenizers/qwen3 [--mb 50] [--corpus FILE.jsonl] [--memory]

The corpus (unless --corpus names one) is a JSONL file of {"text": ...} documents written to
--work: source and documentation files of the Python environment (code and English prose),
with every tenth document a multilingual mix (Chinese, Japanese, emoji, ...) from
tests/python/tokenizer_reference.py. Both sides tokenize the same documents:
  loom        `trainer prepare --format text` end to end: read and parse JSONL, tokenize, write
              HDF5 (wall time; also shown without the one-off tokenizer load)
  tokenizers  Tokenizer.encode_batch(docs, add_special_tokens=False) on the documents already
              in memory (RAYON_NUM_THREADS threads), nothing read or written
MB/s counts the documents' UTF-8 bytes; tokens/s the tokens the reference library produces
(the same ids Loom writes, by the reference tests), so both rates share one numerator.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_corpus(path: Path, megabytes: float) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "python"))
    from tokenizer_reference import make_strings

    multilingual = make_strings(4000, seed=7)
    target = int(megabytes * 1e6)
    site = Path(sys.prefix) / "lib"
    files = sorted(p for p in site.rglob("*") if p.suffix in (".py", ".md", ".txt", ".rst"))
    written = 0
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            for f in files:
                try:
                    text = f.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                for begin in range(0, len(text), 32000):
                    doc = text[begin:begin + 32000]
                    if n % 10 == 9:
                        doc = " ".join(multilingual[(n * 37 + k) % len(multilingual)] for k in range(200))
                    line = json.dumps({"text": doc}, ensure_ascii=False) + "\n"
                    out.write(line)
                    written += len(line.encode("utf-8"))
                    n += 1
                    if written >= target:
                        return


def read_docs(path: Path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


REFERENCE = r"""
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
with open(sys.argv[2], encoding="utf-8") as f:
    docs = [json.loads(l)["text"] for l in f if l.strip()]
t = time.perf_counter()
enc = tok.encode_batch(docs, add_special_tokens=False)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "tokens": sum(len(e.ids) for e in enc)}))
"""


def run_reference(tokenizer: Path, corpus: Path, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    out = subprocess.run([sys.executable, "-c", REFERENCE, str(tokenizer / "tokenizer.json"), str(corpus)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_loom(trainer: str, tokenizer: Path, corpus: Path, threads: int, work: Path, memory: bool) -> dict:
    out = work / f"bench-{threads}.h5"
    cmd = [trainer, "prepare", "--no-progress", "--tokenizer", str(tokenizer), "--input", str(corpus),
           "--format", "text", "--output", str(out), "--threads", str(threads),
           # No splitting: each document is one sample, so the token count can be checked.
           "--seq-len", "1000000000"]
    if memory:
        cmd = ["/usr/bin/time", "-v"] + cmd
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"trainer prepare failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    load = float(re.search(r"tokenizer loaded in ([0-9.]+) s", r.stdout).group(1))
    tokens = int(re.search(r"samples \d+, tokens (\d+)", r.stdout).group(1))
    result = {"seconds": dt, "load": load, "tokens": tokens}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    if m:
        result["max_rss_mb"] = int(m.group(1)) / 1024
    out.unlink(missing_ok=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainer", default=str(ROOT / "build" / "src" / "trainer"))
    ap.add_argument("--tokenizer", type=Path, default=ROOT.parent / "shared" / "tokenizers" / "qwen3")
    ap.add_argument("--corpus", type=Path, help="a JSONL file of {\"text\"} records (default: generated)")
    ap.add_argument("--mb", type=float, default=50.0, help="size of the generated corpus")
    ap.add_argument("--work", type=Path, default=Path("/tmp/loom-prepare-bench"))
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="the 'all threads' count")
    ap.add_argument("--memory", action="store_true", help="also report the trainer's max RSS (/usr/bin/time -v)")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus
    if corpus is None:
        corpus = args.work / f"corpus-{args.mb:g}mb.jsonl"
        if not corpus.exists():
            build_corpus(corpus, args.mb)
    docs = read_docs(corpus)
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    file_bytes = corpus.stat().st_size
    n_docs = len(docs)
    print(f"corpus {corpus}: {len(docs)} documents, {text_bytes / 1e6:.1f} MB of text "
          f"({file_bytes / 1e6:.1f} MB JSONL); tokenizer {args.tokenizer}; {os.cpu_count()} cores")
    del docs

    rows = []
    tokens = None
    for threads in sorted({1, args.threads}):
        ref = run_reference(args.tokenizer, corpus, threads)
        tokens = ref["tokens"]
        rows.append(("tokenizers encode_batch", threads, ref["seconds"], None, None))
        loom = run_loom(args.trainer, args.tokenizer, corpus, threads, args.work, args.memory)
        # Loom appends one EOS per document; otherwise the same ids (see the reference tests).
        if loom["tokens"] != tokens + n_docs:
            sys.exit(f"token counts differ: loom {loom['tokens']}, tokenizers {tokens} + {n_docs} EOS")
        rows.append(("loom prepare (wall)", threads, loom["seconds"], loom.get("max_rss_mb"), None))
        rows.append(("loom prepare (w/o load)", threads, loom["seconds"] - loom["load"], None, None))
    print(f"{tokens} tokens (reference count; Loom's count checked equal, plus one EOS per document)\n")
    print(f"{'implementation':26} {'threads':>7} {'seconds':>8} {'MB/s':>8} {'Mtok/s':>8} {'max RSS MB':>10}")
    for name, threads, secs, rss, _ in rows:
        print(f"{name:26} {threads:7d} {secs:8.2f} {text_bytes / secs / 1e6:8.2f} "
              f"{tokens / secs / 1e6:8.3f} {'' if rss is None else f'{rss:10.0f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

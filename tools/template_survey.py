"""Survey of published chat templates: does Loom render them byte-identically to transformers?

    .venv/bin/python tools/template_survey.py --templates DIR --out report.json [--trainer PATH] [--tokenizer DIR]

DIR holds NAME.jinja files (and optionally SOURCES.tsv: "NAME.jinja<TAB>where it came from" per
line, copied into the report). --tokenizer may be repeated (default <repo>/../shared/tokenizers/
qwen2_5, then llama3_1): each template uses the first one under which transformers renders the
most conversations (qwen2_5 has no bos_token, which templates writing `bos_token + ...` need).
Special tokens of other families just become plain text pieces, fine for comparing ids.
For each template:
  1. CONVERSATIONS below (single turn, system, two exchanges, non-ASCII, whitespace around the
     content), each ending with an assistant message (Loom skips records without one).
  2. Reference: tok.apply_chat_template(messages, chat_template=source, tokenize=True,
     return_dict=False). A conversation it raises on is dropped for that template (recorded in
     "dropped" with the error).
  3. Loom: the remaining conversations go to one JSONL; `trainer prepare --format chat
     --chat-template FILE` writes them to HDF5 (tokens / offsets, samples in input order), and
     each sample is compared with its reference ids. Status:
       identical      every sample equals its reference;
       differs        the first differing conversation, index and both decoded texts around it
                      (also when Loom kept fewer samples than it was given); it also says when
                      transformers with enable_thinking=False gives Loom's ids (Loom's
                      --thinking auto passes enable_thinking=false to records without reasoning);
       refused        exit 2 naming no record: the parser named an unsupported construct
                      (FILE:LINE:COL);
       runtime-error  exit 2 naming a record although transformers rendered it; each
                      conversation is then run alone to tell which ones fail;
       hf-refuses-all transformers renders none of the conversations;
       error          anything else (other exit code, timeout).
  4. "constructs": the Jinja features the template uses beyond output/if/for/set, from jinja2's
     AST (tags, filters, tests, method calls), to see what a refused template needs past the
     first construct the parser names.
  5. The JSON report ({"templates": [...], "counts", "seconds"}) and a printed table.
No GPU, builds nothing; a template costs one `trainer prepare` run (~1-2 s), more on a runtime error.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import h5py  # noqa: E402
from jinja2 import nodes  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from transformers.utils.chat_template_utils import _compile_jinja_template  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository

CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is 2+2?"},
               {"role": "assistant", "content": "2+2 equals 4."}],
    "system": [{"role": "system", "content": "You are a terse assistant."},
               {"role": "user", "content": "Name a prime number."},
               {"role": "assistant", "content": "7"}],
    "multi": [{"role": "user", "content": "Hi there!"},
              {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "Tell me a fact about owls."},
              {"role": "assistant", "content": "Owls can rotate their heads about 270 degrees."}],
    "non_ascii": [{"role": "user", "content": "Größe von 日本? Ça va — naïve café 😀"},
                  {"role": "assistant", "content": "Très bien: 東京は大きい ✓ – ünïcødé 🚀"}],
    "whitespace": [{"role": "user", "content": "  padded question \n\n"},
                   {"role": "assistant", "content": "\n  padded answer\t \n"}],
}


def reference(tok, source, messages, **kwargs):
    try:
        ids = tok.apply_chat_template(messages, chat_template=source, tokenize=True,
                                      return_dict=False, **kwargs)
        return [int(i) for i in ids], None
    except Exception as e:  # the template refuses this conversation (raise_exception, ...)
        return None, f"{type(e).__name__}: {e}"


def constructs(source):
    """The tags, filters, tests and method calls a template uses (beyond output/if/for/set)."""
    try:  # transformers' own environment (loop controls, {% generation %})
        ast = _compile_jinja_template(source).environment.parse(source)
    except Exception as e:
        return [f"jinja2 cannot parse it: {e}"]
    found = set()
    for n in ast.find_all(nodes.Node):
        if isinstance(n, nodes.Filter):
            found.add(f"filter {n.name}")
        elif isinstance(n, nodes.Test):
            found.add(f"test {n.name}")
        elif isinstance(n, nodes.Call) and isinstance(n.node, nodes.Getattr):
            found.add(f"method .{n.node.attr}()")
        elif isinstance(n, nodes.For) and n.recursive:
            found.add("tag for ... recursive")
        elif isinstance(n, (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.ExprStmt,
                            nodes.With, nodes.Scope, nodes.Break, nodes.Continue)):
            found.add(f"tag {type(n).__name__}")
    return sorted(found)


def run_loom(args, template, convs, work):
    """Runs trainer prepare on convs; returns (rc, message, [ids per sample])."""
    jsonl, out = os.path.join(work, "in.jsonl"), os.path.join(work, "out.h5")
    with open(jsonl, "w", encoding="utf-8") as f:
        for messages in convs:
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    if os.path.exists(out):
        os.remove(out)
    cmd = [args.trainer, "prepare", "--tokenizer", args.tok_dir, "--input", jsonl, "--format",
           "chat", "--output", out, "--chat-template", template, "--no-progress", "--seq-len",
           "100000", "--threads", "1"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timeout after {args.timeout} s", []
    msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
    msg = msg[-1] if p.returncode != 0 and msg else ""
    samples = []
    if p.returncode == 0:
        with h5py.File(out, "r") as h:
            tokens, offsets = h["tokens"][:], h["offsets"][:]
        samples = [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    return p.returncode, msg, samples


def show_diff(tok, name, ref, got):
    i = next((k for k, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
    lo = max(0, i - 6)
    return (f"{name}: first difference at token {i} (hf {len(ref)} / loom {len(got)} tokens): "
            f"hf {tok.decode(ref[lo:i + 6])!r} vs loom {tok.decode(got[lo:i + 6])!r}")


def compare(tok, names, refs, samples):
    if len(samples) != len(refs):
        return "differs", f"Loom wrote {len(samples)} samples for {len(refs)} conversations"
    for name, ref, got in zip(names, refs, samples):
        if ref != got:
            return "differs", show_diff(tok, name, ref, got)
    return "identical", f"{len(refs)} conversations identical"


def survey(args, toks, path, work):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    row = {"constructs": constructs(source)}
    best = None
    for tok_dir, tok in toks.items():  # the first tokenizer that renders the most conversations
        refs = {n: reference(tok, source, m) for n, m in CONVERSATIONS.items()}
        ok = sum(err is None for _, err in refs.values())
        if best is None or ok > best[0]:
            best = (ok, tok_dir, tok, refs)
    _, args.tok_dir, tok, results = best
    row["tokenizer"] = os.path.basename(os.path.normpath(args.tok_dir))
    row["dropped"] = {n: err[:300] for n, (_, err) in results.items() if err}
    names = [n for n, (_, err) in results.items() if err is None]
    convs = [CONVERSATIONS[n] for n in names]
    refs = [results[n][0] for n in names]
    row["compared"] = names
    if not names:
        row["status"], row["detail"] = "hf-refuses-all", next(iter(row["dropped"].values()))
        return row
    rc, msg, samples = run_loom(args, path, convs, work)
    if rc == 0:
        row["status"], row["detail"] = compare(tok, names, refs, samples)
        if row["status"] == "differs":
            off = [reference(tok, source, m, enable_thinking=False)[0] for m in convs]
            if off == samples:
                row["detail"] += "; = transformers with enable_thinking=False"
    elif rc == 2 and not re.search(r"in\.jsonl:\d+", msg):  # no record named: the parser
        row["status"], row["detail"] = "refused", msg
    elif rc == 2:  # a runtime error on some record: find which conversations fail
        failing, kept = {}, ([], [], [])
        for name, messages, ref in zip(names, convs, refs):
            rc1, msg1, s1 = run_loom(args, path, [messages], work)
            if rc1 == 0:
                kept[0].append(name), kept[1].append(ref), kept[2].extend(s1)
            else:
                failing[name] = msg1
        rest = compare(tok, *kept) if kept[0] else ("-", "")
        row["status"] = "runtime-error"
        row["failing"] = failing
        row["others"] = {"names": kept[0], "status": rest[0], "detail": rest[1]}
        row["detail"] = (f"fails on {sorted(failing)}: {next(iter(failing.values()), msg)}"
                         f"; others {rest[0]}")
    else:
        row["status"], row["detail"] = "error", f"exit {rc}: {msg}"
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--trainer", default=os.path.join(ROOT, "build", "src", "trainer"))
    ap.add_argument("--tokenizer", action="append", help="repeatable; default qwen2_5, llama3_1")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per trainer run")
    args = ap.parse_args()
    start = time.time()
    shared = os.path.normpath(os.path.join(ROOT, "..", "shared", "tokenizers"))
    dirs = args.tokenizer or [os.path.join(shared, "qwen2_5"), os.path.join(shared, "llama3_1")]
    toks = {d: AutoTokenizer.from_pretrained(d) for d in dirs}
    sources = {}
    tsv = os.path.join(args.templates, "SOURCES.tsv")
    if os.path.exists(tsv):
        with open(tsv, encoding="utf-8") as f:
            sources = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for fname in sorted(os.listdir(args.templates)):
            if not fname.endswith(".jinja"):
                continue
            t0 = time.time()
            row = {"template": fname[:-len(".jinja")], "source": sources.get(fname, "")}
            row.update(survey(args, toks, os.path.join(args.templates, fname), work))
            row["seconds"] = round(time.time() - t0, 2)
            rows.append(row)
            print(f"{row['template']}: {row['status']}", file=sys.stderr, flush=True)
    counts = {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})}
    report = {"tokenizers": dirs, "trainer": args.trainer, "counts": counts,
              "seconds": round(time.time() - start, 1), "templates": rows}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
    print(f"\n{'template':<48} {'status':<14} source / detail")
    for r in rows:
        print(f"{r['template']:<48} {r['status']:<14} [{r['tokenizer']}] {r['source']}\n"
              f"{'':<63} {r['detail']}")
    print(f"\n{counts}; {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

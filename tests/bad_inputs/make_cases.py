#!/usr/bin/env python3
"""Builds Loom's bad-input corpus: a tiny valid world made with the project's own tools, then
one folder per case holding a copy of what the case needs with ONE thing broken.

    make_cases.py --out DIR --trainer build/src/trainer [--python PY]

Writes
  DIR/base/            the valid world (made once, read by the cases, never written by them):
    tiny/model/          tiny Qwen3 model + byte-level BPE tokenizer (tools/make_tiny_example.py)
    inputs/              alpaca/chat/text/template records as JSONL, JSON array and .txt
    data/train.h5 ...    token files made by `trainer prepare`
    run.yaml, run/       a 2-step LoRA run on one CPU rank: checkpoints/step-1, step-2, adapter/
    export/              the run's adapter written by `trainer export`
  DIR/cases/<id>/      one folder per case (the case runs with this folder as its working dir)
  DIR/cases.json       the manifest that run_cases.py reads

Each manifest entry: id, group, argv (placeholders {trainer} {mpiexec} {python} {case} {base}),
expect_exit (2 for bad input, 0 for the controls), words (every entry must appear in the
output, case-insensitive; a list entry means any one of its strings), forbid (regexes that must
not match the output), absent (paths relative to the case folder, globs allowed, that must not
exist afterwards), unchanged (paths that must stay byte-identical), tree_unchanged (nothing in
the case folder may be created, changed or removed), post (checks after a successful run),
needs (e.g. ["mpiexec"]), note.

The generator is deterministic: the same trainer and Python produce the same corpus.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

# The case groups live in sibling modules (one family per file); make sure they import
# whatever the working directory, and keep their bytecode out of the source tree.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

from cases_common import REPO, RUN_YAML, SHARED_TOKENIZERS, TEST_ENV, st_load_numpy  # noqa: E402
from cases_files import FileCases  # noqa: E402
from cases_inputs import InputCases  # noqa: E402
from cases_runs import RunCases  # noqa: E402


class Generator(InputCases, FileCases, RunCases):
    """The valid base world, the helpers every case uses, and build(); the groups
    (group_config, group_prepare, ...) come from the mixins in cases_*.py."""

    def __init__(self, out, trainer, python):
        self.out = os.path.abspath(out)
        self.trainer = os.path.abspath(trainer)
        self.python = python
        self.base = os.path.join(self.out, "base")
        self.cases_dir = os.path.join(self.out, "cases")
        self.cases = []
        self.env = dict(os.environ)
        self.env.update(TEST_ENV)

    # ---- helpers ------------------------------------------------------------------------

    def sh(self, argv, cwd=None):
        t = time.time()
        r = subprocess.run(argv, cwd=cwd or self.base, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace")
        if r.returncode != 0:
            sys.stderr.write(r.stdout)
            raise SystemExit(f"[make_cases] failed ({r.returncode}): {' '.join(argv)}")
        self.log(f"{time.time() - t:5.1f}s  {' '.join(os.path.basename(a) if a == self.trainer else a for a in argv)[:150]}")
        return r.stdout

    def log(self, msg):
        print(f"[make_cases] {msg}", file=sys.stderr, flush=True)

    def b(self, *parts):
        return os.path.join(self.base, *parts)

    def prepare(self, inputs, fmt, output, tokenizer=None, extra=()):
        argv = [self.trainer, "prepare", "--tokenizer", tokenizer or self.model, "--format", fmt,
                "--output", output, "--seq-len", "64", "--no-progress", "--threads", "1"]
        for i in inputs:
            argv += ["--input", i]
        return self.sh(argv + list(extra))

    def yaml(self, *, out="run", model=None, train=None, eval_=None, method="lora", adapter=None,
             r=4, max_steps=1, every=0, resume="auto"):
        return RUN_YAML.format(
            out=out, model=model or self.model, train=train or self.train_h5, method=method,
            adapter=f"  adapter: {adapter}\n" if adapter else "",
            eval=f"  eval: {eval_}\n" if eval_ else "", r=r, max_steps=max_steps, every=every,
            resume=resume)

    def case(self, cid, group, argv, *, exit=2, words=(), forbid=(), forbid_bytes=(), absent=(),
             unchanged=(),
             tree_unchanged=None, post=(), needs=(), note="", timeout=None, files=None):
        assert all(c["id"] != cid for c in self.cases), cid
        d = os.path.join(self.cases_dir, cid)
        os.makedirs(d)
        for name, content in (files or {}).items():
            self.write(d, name, content)
        entry = {"id": cid, "group": group, "argv": list(argv), "cwd": "{case}",
                 "expect_exit": exit, "words": list(words), "forbid": list(forbid),
                 "forbid_bytes": list(forbid_bytes),
                 "absent": list(absent), "unchanged": list(unchanged),
                 "tree_unchanged": (exit != 0) if tree_unchanged is None else tree_unchanged,
                 "post": list(post), "needs": list(needs), "note": note}
        if timeout:
            entry["timeout"] = timeout
        self.cases.append(entry)
        return d

    @staticmethod
    def write(d, name, content):
        path = os.path.join(d, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as f:
            f.write(content)
        return path

    @staticmethod
    def copy(src, dst):
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
        return dst

    # ---- the valid world ----------------------------------------------------------------

    def make_base(self):
        os.makedirs(self.base)
        self.sh([self.python, os.path.join(REPO, "tools", "make_tiny_example.py"), "--out",
                 self.b("tiny"), "--train-samples", "120", "--eval-samples", "16", "--seed", "0"])
        self.model = self.b("tiny", "model")
        with open(os.path.join(self.model, "config.json")) as f:
            self.vocab = json.load(f)["vocab_size"]
        with open(self.b("tiny", "train.jsonl")) as f:
            self.alpaca = [json.loads(line) for line in f if line.strip()]

        inp = self.b("inputs")
        os.makedirs(inp)
        recs = self.alpaca[:24]
        self.write(inp, "alpaca.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
        self.write(inp, "alpaca.json", json.dumps(recs, indent=1) + "\n")
        chat = [{"messages": [{"role": "user", "content": r["instruction"] + (
            "\n\n" + r["input"] if r.get("input") else "")},
            {"role": "assistant", "content": r["output"]}]} for r in recs]
        self.chat = chat
        self.write(inp, "chat.jsonl", "".join(json.dumps(r) + "\n" for r in chat))
        self.write(inp, "chat.json", json.dumps(chat) + "\n")
        texts = [f"{r['instruction']} {r.get('input', '')} {r['output']}".strip() for r in recs]
        self.texts = texts
        self.write(inp, "text.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts))
        self.write(inp, "text.txt", "".join(t + "\n" for t in texts))
        tmpl = [{"Question": r["instruction"], "Response": r["output"]} for r in recs]
        self.write(inp, "template.jsonl", "".join(json.dumps(r) + "\n" for r in tmpl))

        data = self.b("data")
        os.makedirs(data)
        self.train_h5 = self.b("data", "train.h5")
        self.eval_h5 = self.b("data", "eval.h5")
        self.prepare([self.b("tiny", "train.jsonl")], "alpaca", self.train_h5,
                     extra=["--val-fraction", "0.15", "--val-output", self.eval_h5])
        self.prepare([self.b("inputs", "alpaca.jsonl")], "alpaca", self.b("data", "ref_alpaca.h5"))
        self.prepare([self.b("inputs", "text.txt")], "text", self.b("data", "ref_text.h5"))
        self.prepare([self.b("inputs", "chat.json")], "chat", self.b("data", "ref_chat.h5"))

        # Another tokenizer of the same vocabulary size: two tokens swap ids.
        other = self.b("other_tok")
        os.makedirs(other)
        with open(os.path.join(self.model, "tokenizer.json")) as f:
            tj = json.load(f)
        vocab = tj["model"]["vocab"]
        a, c = "a", "e"
        vocab[a], vocab[c] = vocab[c], vocab[a]
        self.write(other, "tokenizer.json", json.dumps(tj, ensure_ascii=False))
        shutil.copyfile(os.path.join(self.model, "tokenizer_config.json"),
                        os.path.join(other, "tokenizer_config.json"))
        self.prepare([self.b("tiny", "train.jsonl")], "alpaca", self.b("data", "train_othertok.h5"),
                     tokenizer=other)
        qwen3 = os.environ.get("LOOM_QWEN3_TOKENIZER") or os.path.join(SHARED_TOKENIZERS, "qwen3")
        self.qwen3 = qwen3
        self.have_qwen3 = os.path.isfile(os.path.join(qwen3, "tokenizer.json"))
        if self.have_qwen3:
            self.prepare([self.b("inputs", "alpaca.jsonl")], "alpaca",
                         self.b("data", "train_qwen3.h5"), tokenizer=qwen3)

        import h5py
        with h5py.File(self.train_h5, "r") as f:
            self.n_train = int(f.attrs["num_samples"])
            self.offsets = f["offsets"][...]

        # A 2-step LoRA run, a checkpoint after each step, and its exported adapter.
        self.base_run_yaml = self.yaml(max_steps=2, every=1, eval_=self.eval_h5)
        self.write(self.base, "run.yaml", self.base_run_yaml)
        self.sh([self.trainer, "--config", "run.yaml", "--log-level", "warn"])
        for p in ("run/checkpoints/step-1/trainer_state.json",
                  "run/checkpoints/step-2/trainer_state.json", "run/adapter/adapter_config.json"):
            assert os.path.exists(self.b(p)), p
        self.step2 = self.b("run", "checkpoints", "step-2")
        self.sh([self.trainer, "export", "--config", "run.yaml", "--out", "export"])
        self.adapter = self.b("run", "adapter")
        names = sorted(st_load_numpy(os.path.join(self.adapter, "adapter_model.safetensors")))
        self.lora_a = next(n for n in names if "layers.0." in n and "q_proj" in n and "lora_A" in n)
        self.lora_b = self.lora_a.replace("lora_A", "lora_B")

    # ---- shared case shapes -------------------------------------------------------------

    def prep_argv(self, inputs, fmt, tok=None, extra=(), out="out.h5", seq_len="64"):
        argv = ["{trainer}", "prepare", "--tokenizer", tok or "{base}/tiny/model", "--format",
                fmt, "--output", out, "--seq-len", seq_len, "--no-progress"]
        for i in inputs:
            argv += ["--input", i]
        return argv + list(extra)

    TRAIN = ["{trainer}", "--config", "run.yaml"]
    TRAIN2 = ["{mpiexec}", "-n", "2", "{trainer}", "--config", "run.yaml"]
    PRINT = ["{trainer}", "--config", "run.yaml", "--print-config"]
    EVAL = ["{trainer}", "eval", "--config", "run.yaml", "--device", "cpu"]

    def train_case(self, cid, group, yaml_text, words, **kw):
        """A training run in a fresh run directory, refused: nothing may appear in run/."""
        kw.setdefault("absent", ["run/config.yaml", "run/metrics.jsonl", "run/checkpoints"])
        return self.case(cid, group, self.TRAIN, words=words, files={"run.yaml": yaml_text}, **kw)

    # ---- all ----------------------------------------------------------------------------

    def build(self):
        t0 = time.time()
        if os.path.exists(self.out):
            shutil.rmtree(self.out)
        os.makedirs(self.cases_dir)
        self.make_base()
        t1 = time.time()
        for group in (self.group_config, self.group_prepare, self.group_tokenizer,
                      self.group_model, self.group_safetensors, self.group_hdf5,
                      self.group_adapter, self.group_checkpoint, self.group_cli, self.group_mpi):
            group()
        manifest = {"format": "loom-bad-inputs", "version": 1, "base": self.base,
                    "cases_dir": self.cases_dir, "cases": self.cases}
        with open(os.path.join(self.out, "cases.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        groups = {}
        for c in self.cases:
            groups[c["group"]] = groups.get(c["group"], 0) + 1
        self.log(f"{len(self.cases)} cases ({', '.join(f'{k} {v}' for k, v in groups.items())})"
                 f" in {self.out}; base world {t1 - t0:.1f}s, cases {time.time() - t1:.1f}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to (re)create")
    ap.add_argument("--trainer", default=os.path.join(REPO, "build", "src", "trainer"))
    ap.add_argument("--python", default=sys.executable,
                    help="Python with torch + transformers (runs tools/make_tiny_example.py)")
    args = ap.parse_args()
    if not os.access(args.trainer, os.X_OK):
        raise SystemExit(f"[make_cases] --trainer {args.trainer}: not an executable")
    Generator(args.out, args.trainer, args.python).build()


if __name__ == "__main__":
    main()

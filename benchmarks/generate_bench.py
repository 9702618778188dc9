#!/usr/bin/env python3
"""Decode speed of `trainer generate` beside transformers' `generate`, on the same model, the
same prompts and the same threads, in one run (greedy, fp32 on the CPU or bf16 on a GPU).

    .venv/bin/python benchmarks/generate_bench.py --trainer build/src/trainer \\
        [--model DIR] [--batch 1 8] [--new-tokens 64] [--threads 2] [--device cpu]

Without --model a random-weight Qwen3 (benchmarks/make_bench_model.py's default shape, about
30M parameters with the quick start's tokenizer) is made in --work. Prompts: the first
instructions of examples/tiny/eval.jsonl, rendered with the model's chat template (lengths
differ, so batches are left-padded on both sides). Both sides produce the same greedy tokens
(tests/model/generate_test.cpp), so they do the same work:
  loom          `trainer generate --output`: its stderr reports prefill and decode time per batch
  transformers  model.generate(do_sample=False, max_new_tokens=N); prefill is timed as a
                max_new_tokens=1 call, decode as the rest
decode tokens/s counts the tokens after the first of each row (the first comes from prefill)
over the decode time. Each side runs once to warm up, then --repeat times (best kept).
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


def prompts_file(path: Path, n: int) -> list:
    rows = []
    with open(ROOT / "examples" / "tiny" / "eval.jsonl") as f:
        for line in f:
            r = json.loads(line)
            rows.append({"instruction": r["instruction"], "input": r.get("input", "")})
            if len(rows) == n:
                break
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def loom_run(args, model, prompts, batch, env):
    out = Path(args.work) / "loom_answers.jsonl"
    cmd = [args.trainer, "generate", "--model", str(model), "--prompts", str(prompts), "--output",
           str(out), "--max-new-tokens", str(args.new_tokens), "--batch-size", str(batch),
           "--device", args.device, "--dtype", args.dtype]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"trainer generate failed ({p.returncode}):\n{p.stderr}")
    prefill = decode = 0.0
    new = rows = 0
    pattern = re.compile(r"prompts (\d+)-(\d+): prefill (\d+) tokens in ([0-9.e+-]+) s .*decode "
                         r"(\d+) tokens in ([0-9.e+-]+) s")
    for line in p.stderr.splitlines():
        m = pattern.search(line)
        if m:
            rows += int(m.group(2)) - int(m.group(1)) + 1
            prefill += float(m.group(4))
            new += int(m.group(5))
            decode += float(m.group(6))
    answers = [json.loads(l) for l in open(out)]
    return {"prefill_s": prefill, "decode_s": decode, "decode_tokens": new - rows,
            "ids": [a["token_ids"] for a in answers]}


def hf_run(args, model, tok, texts, batch):
    import torch
    prefill = decode = 0.0
    decode_tokens = 0
    ids = []
    eos = [tok.eos_token_id] + [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")
                                if t in tok.get_vocab()]
    for first in range(0, len(texts), batch):
        enc = tok(texts[first:first + batch], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(args.device)
        kw = dict(do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
        with torch.no_grad():
            t0 = time.perf_counter()
            model.generate(**enc, max_new_tokens=1, **kw)
            sync(args)
            t1 = time.perf_counter()
            out = model.generate(**enc, max_new_tokens=args.new_tokens, **kw)
            sync(args)
            t2 = time.perf_counter()
        prefill += t1 - t0
        decode += (t2 - t1) - (t1 - t0)
        width = enc["input_ids"].shape[1]
        for row in out[:, width:].tolist():
            n = len(row)
            for k, t in enumerate(row):  # up to and including the first stop token
                if t in eos:
                    n = k + 1
                    break
            ids.append(row[:n])
            decode_tokens += n - 1
    return {"prefill_s": prefill, "decode_s": decode, "decode_tokens": decode_tokens, "ids": ids}


def sync(args):
    if args.device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trainer", default=str(ROOT / "build" / "src" / "trainer"))
    ap.add_argument("--model")
    ap.add_argument("--work", default=str(ROOT / "build" / "bench_generate"))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    args.dtype = "fp32" if args.device == "cpu" else "bf16"
    os.makedirs(args.work, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_example.py")], check=True,
                   cwd=ROOT)
    model_dir = Path(args.model) if args.model else Path(args.work) / "model"
    if not args.model and not (model_dir / "config.json").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_bench_model.py"),
                        str(model_dir)], check=True, cwd=ROOT)

    import torch
    import transformers
    torch.set_num_threads(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    prompts = Path(args.work) / "prompts.jsonl"
    rows = prompts_file(prompts, args.prompts)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    texts = [tok.apply_chat_template([{"role": "user", "content": r["instruction"] + (
        "\n\n" + r["input"] if r["input"] else "")}], tokenize=False, add_generation_prompt=True)
        for r in rows]
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"generate_bench: {model_dir} ({n_params / 1e6:.1f}M parameters, {args.dtype}) on {name}; "
          f"{len(rows)} prompts, {args.new_tokens} new tokens, greedy")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"{'batch':>5} | {'side':<12} | {'prefill s':>9} | {'decode s':>8} | {'decode tok':>10} | "
          f"{'decode tok/s':>12} | same ids")
    for batch in args.batch:
        results = {}
        for side in ("loom", "transformers"):
            best = None
            for _ in range(args.repeat + 1):  # the first run warms up
                r = (loom_run(args, model_dir, prompts, batch, env) if side == "loom"
                     else hf_run(args, model, tok, texts, batch))
                rate = r["decode_tokens"] / max(r["decode_s"], 1e-9)
                if best is None or rate > best["rate"]:
                    best = dict(r, rate=rate)
            results[side] = best
        same = results["loom"]["ids"] == results["transformers"]["ids"]
        for side in ("loom", "transformers"):
            r = results[side]
            print(f"{batch:>5} | {side:<12} | {r['prefill_s']:>9.3f} | {r['decode_s']:>8.3f} | "
                  f"{r['decode_tokens']:>10} | {r['rate']:>12.1f} | {'yes' if same else 'NO'}")
        print(f"{batch:>5} | loom / transformers decode tokens/s: "
              f"{results['loom']['rate'] / results['transformers']['rate']:.2f}x")


if __name__ == "__main__":
    main()

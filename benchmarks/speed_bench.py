#!/usr/bin/env python3
"""Loom against Hugging Face Trainer + PEFT on the same device, the same samples, the same
steps: tokens/s (real, non-pad tokens), peak memory, model FLOPs utilisation, and Loom/HF.

    .venv/bin/python benchmarks/speed_bench.py --case cpu            # ~5 min on 2 cores
    .venv/bin/python benchmarks/speed_bench.py --case lora-1.7b [--steps 12] [--json r.json]
    .venv/bin/python benchmarks/speed_bench.py --case full-0.6b [--steps 12] [--json r.json]
    ... --sync-count   (CUDA) host waits per step, counted at the CUDA runtime (sync_count.py)
    ... --profile      one more Loom run whose last step torch's profiler traces: a table of
                       device kernels and host operators (train.profile_steps)

Cases (random weights, real shapes, made here by transformers; nothing is downloaded):
  lora-1.7b  Qwen3-1.7B shape, LoRA r16 alpha 32 all-linear, seq 2048, bf16 (CUDA)
  full-0.6b  Qwen3-0.6B shape, full fine-tuning, seq 2048, bf16 (CUDA)
  cpu        a small Qwen3-shaped model, LoRA, fp32 on the CPU (both sides in a few minutes)

The samples are variable-length documents (lengths from a fixed-seed log-normal, like
instruction data; the first part of each is prompt, loss on the rest), written once to
Loom's HDF5 format. Loom packs them into rows of --seq-len (data.packing: true); HF pads
each micro-batch to its longest sample (DataCollatorForSeq2Seq, its usual collator), and,
when flash-attn is installed, also runs with DataCollatorWithFlattening. Each optimizer step
takes the same samples on both sides: Loom's epoch order is recomputed here (its splitmix64
Fisher-Yates shuffle) and HF reads the samples in that order with a sequential sampler; the
per-step token counts Loom reports are checked against it. Same lr (constant), AdamW
(HF: adamw_torch_fused where torch has it), clipping at 1.0, no weight decay, LoRA dropout 0,
the same gradient checkpointing choice on both sides. The first --warmup steps are not timed:
Loom's per-step times come from its metrics.jsonl (step_s), HF's from a TrainerCallback
(time between the end of step --warmup and the end of the last step; on CUDA synchronised).

Memory: on CUDA both are the caching allocator's peak of allocated tensor bytes over the
whole process (torch.cuda.max_memory_allocated for HF, Loom's peak_tensor_bytes); the CUDA
context is in neither. On the CPU both get the peak resident set of their process
(getrusage of the child: everything, libraries and Python included), and Loom also its
counting allocator's peak of tensor bytes (HF's has no such counter).

MFU counts model FLOPs only: 4N per token for LoRA (forward + input gradients; the adapters'
~1% not counted), 6N for full, N = the matmul weights (layers + lm_head), plus causal
attention within each document (3x its forward: forward, dQ/dK/dV). Padding and recompute
are not useful work and are not counted. On CUDA it is divided by the GPU's dense bf16 peak
(a small table by name, or --peak-tflops); on the CPU the achieved GFLOP/s are printed.

This is a benchmark that prints numbers, never a timed test. This file: the command line,
the orchestration and the report; speed_bench_data.py: child processes, Loom's epoch order,
the samples, the model, FLOP counts and Loom's run; speed_bench_hf.py: the Hugging Face side.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules
from speed_bench_data import (log, loom_epoch_order, lora_params, make_lengths,  # noqa: E402
                              model_flops, profile_loom, role_model, run_child, run_loom,
                              tail, total_params, write_data)
from speed_bench_hf import role_hf, role_probe, run_hf  # noqa: E402
from sync_count import count_loom, report_line  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QWEN3_1_7B = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                  head_dim=128)
QWEN3_0_6B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                  head_dim=128)
SMALL_CPU = dict(vocab_size=32768, hidden_size=512, intermediate_size=1536,
                 num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                 head_dim=64)

CASES = {
    "lora-1.7b": dict(shape=QWEN3_1_7B, shape_name="Qwen3-1.7B", method="lora", device="cuda",
                      seq_len=2048, min_len=100, max_len=1500, median_len=450,
                      batch_tokens=32768, micro_batch=2, steps=20, warmup=3, lr=2e-4),
    "full-0.6b": dict(shape=QWEN3_0_6B, shape_name="Qwen3-0.6B", method="full", device="cuda",
                      seq_len=2048, min_len=100, max_len=1500, median_len=450,
                      batch_tokens=32768, micro_batch=2, steps=20, warmup=3, lr=1e-5),
    "cpu": dict(shape=SMALL_CPU, shape_name="small Qwen3", method="lora", device="cpu",
                seq_len=512, min_len=32, max_len=384, median_len=120,
                batch_tokens=2048, micro_batch=1, steps=10, warmup=2, lr=2e-4),
}

# Dense bf16 tensor-core peak, TFLOP/s, first match of the name wins (order matters).
PEAK_BF16_TFLOPS = [
    ("GH200", 989.0), ("H200 NVL", 835.0), ("H200", 989.0), ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0), ("H100", 989.0), ("H800", 989.0), ("H20", 148.0), ("B200", 2250.0),
    ("B100", 1750.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("L4", 121.0), ("A10", 125.0), ("A6000", 155.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0),
]


# ----------------------------------------------------------------------------- helpers

def gib(n):
    return "-" if n is None else f"{n / 2**30:.2f}"



# --------------------------------------------------------------------------------- main

def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), default="cpu")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda for the GPU cases")
    ap.add_argument("--steps", type=int, help="optimizer steps (both sides)")
    ap.add_argument("--warmup", type=int, help="first steps left out of the timing")
    ap.add_argument("--seq-len", type=int, help="Loom's packed row length")
    ap.add_argument("--micro-batch", type=int, help="Loom: rows of --seq-len per forward")
    ap.add_argument("--hf-micro-batch", type=int,
                    help="HF: samples per forward (default: as many real tokens on average as "
                         "Loom's micro-batch holds)")
    ap.add_argument("--batch-tokens", type=int,
                    help="about this many real tokens per optimizer step (rounded to whole "
                         "HF micro-batches of samples)")
    ap.add_argument("--layers", type=int, help="fewer layers than the case's shape (smoke runs)")
    ap.add_argument("--min-len", type=int)
    ap.add_argument("--max-len", type=int)
    ap.add_argument("--median-len", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--checkpointing", action="store_true",
                    help="gradient checkpointing on both sides")
    ap.add_argument("--loss-chunk", type=int, default=2048, help="Loom's loss_chunk_tokens")
    ap.add_argument("--hf-full-dtype", choices=["fp32", "bf16"], default="fp32",
                    help="full on CUDA: HF weights in fp32 + bf16 autocast (fp32 masters as "
                         "Loom), or pure bf16")
    ap.add_argument("--hf-flatten", action="store_true",
                    help="also run HF with DataCollatorWithFlattening without flash-attn "
                         "(sdpa, block mask from position_ids; a smoke test of that path)")
    ap.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (else by name)")
    ap.add_argument("--trainer", default=os.environ.get(
        "LOOM_TRAINER", os.path.join(ROOT, "build", "src", "trainer")))
    ap.add_argument("--mpirun", action="store_true", help="run Loom under mpirun -np 1")
    ap.add_argument("--sync-count", action="store_true",
                    help="CUDA: also count Loom's host waits per step at the CUDA runtime "
                         "(benchmarks/sync_count.py: two more Loom runs, warmup+1 and --steps)")
    ap.add_argument("--profile", action="store_true",
                    help="also run Loom for warmup+1 steps, the last traced by torch's profiler "
                         "(train.profile_steps), and print where that step's time went")
    ap.add_argument("--skip-loom", action="store_true")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="work folder (model, data, runs); the model is reused")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--role", choices=["probe", "model", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    a = ap.parse_args()
    case = CASES[a.case]
    for key in ("device", "steps", "warmup", "seq_len", "micro_batch", "batch_tokens",
                "min_len", "max_len", "median_len", "lr"):
        if getattr(a, key) is None:
            setattr(a, key, case[key])
    a.method = case["method"]
    a.shape = dict(case["shape"])
    a.shape_name = case["shape_name"]
    if a.layers:
        a.shape["num_hidden_layers"] = a.layers
    a.max_len = min(a.max_len, a.seq_len)
    a.min_len = min(a.min_len, a.max_len)
    a.median_len = min(max(a.median_len, a.min_len), a.max_len)
    if a.steps <= a.warmup:
        ap.error(f"--steps ({a.steps}) must be more than --warmup ({a.warmup})")
    return a


def main():
    a = parse()
    if a.role == "probe":
        return role_probe(a.spec)
    if a.role == "model":
        return role_model(a.spec)
    if a.role == "hf":
        return role_hf(a.spec)

    if not os.path.exists(a.trainer) and not a.skip_loom:
        sys.exit(f"no Loom trainer at {a.trainer} (build it, or pass --trainer / LOOM_TRAINER)")
    work = os.path.abspath(a.out or os.path.join(ROOT, "runs", "speed_bench", a.case))
    os.makedirs(work, exist_ok=True)
    probe_path = os.path.join(work, "probe.json")
    rc, _, _ = run_child([sys.executable, os.path.abspath(__file__), "--role", "probe",
                          "--spec", probe_path], os.path.join(work, "probe.log"), 600)
    if rc != 0:
        sys.exit("probe failed:\n" + tail(os.path.join(work, "probe.log")))
    with open(probe_path) as f:
        probe = json.load(f)
    if a.device == "cuda" and not probe["cuda"]:
        sys.exit("--device cuda, but torch sees no CUDA device (use --device cpu for a smoke run)")
    a.optim = "adamw_torch_fused" if probe.get(f"fused_adamw_{a.device}") else "adamw_torch"
    a.attn = "flash_attention_2" if (a.device == "cuda" and probe.get("flash_attn")) else "sdpa"

    # The model: random weights, real shapes; reused when the folder holds the same shape.
    model_dir = os.path.join(work, "model")
    disk_dtype = "bf16" if a.device == "cuda" else "fp32"
    model_spec = {"shape": a.shape, "disk_dtype": disk_dtype, "out": model_dir}
    stamp = os.path.join(model_dir, "speed_bench.json")
    stamp_ok = False
    if os.path.exists(stamp):
        with open(stamp) as f:
            stamp_ok = json.load(f) == model_spec
    if not stamp_ok:
        shutil.rmtree(model_dir, ignore_errors=True)
        spec_path = os.path.join(work, "model-spec.json")
        with open(spec_path, "w") as f:
            json.dump(model_spec, f)
        log(f"making the model ({a.shape_name} shape, {a.shape['num_hidden_layers']} layers)")
        rc, _, wall = run_child([sys.executable, os.path.abspath(__file__), "--role", "model",
                                 "--spec", spec_path], os.path.join(work, "model.log"), a.timeout)
        if rc != 0:
            sys.exit("making the model failed:\n" + tail(os.path.join(work, "model.log")))
        with open(stamp, "w") as f:
            json.dump(model_spec, f)
        log(f"model made in {wall:.0f} s")

    # The samples, and which of them each step takes (Loom's order, recomputed here).
    mean_len = float(make_lengths(a, 4096).mean())
    if a.hf_micro_batch is None:
        a.hf_micro_batch = max(1, round(a.micro_batch * a.seq_len * 0.9 / mean_len))
    per_step = max(1, round(a.batch_tokens / mean_len / a.hf_micro_batch)) * a.hf_micro_batch
    n = per_step * a.steps
    lengths = make_lengths(a, n)
    data = os.path.join(work, "data.h5")
    write_data(data, lengths, a.shape["vocab_size"])
    order = loom_epoch_order(n, a.seed)
    step_docs = [[int(lengths[i]) for i in order[k * per_step:(k + 1) * per_step]]
                 for k in range(a.steps)]
    step_tokens = [sum(d) for d in step_docs]
    timed_docs = [L for d in step_docs[a.warmup:] for L in d]
    flops_timed = model_flops(a.shape, a.method, timed_docs)
    # HF's padded tokens: each micro-batch padded to its longest sample.
    hf_padded = sum(a.hf_micro_batch * max(d[i:i + a.hf_micro_batch])
                    for d in step_docs for i in range(0, len(d), a.hf_micro_batch))

    if a.device == "cuda":
        dev_name = probe.get("gpu", "cuda")
        peak = a.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS if k in dev_name), None)
    else:
        dev_name = f"{probe['cpu']} ({probe['cpu_count']} cores, torch threads {probe['torch_threads']})"
        peak = None

    results = {"case": a.case, "device": a.device, "device_name": dev_name,
               "versions": {k: probe.get(k) for k in ("torch", "transformers", "peft",
                                                      "flash_attn", "python", "torch_cuda")},
               "loom_commit": git_describe(a.trainer),
               "settings": {k: getattr(a, k) for k in (
                   "method", "steps", "warmup", "seq_len", "micro_batch", "hf_micro_batch",
                   "checkpointing", "lr", "loss_chunk", "optim", "attn", "min_len", "max_len",
                   "median_len", "hf_full_dtype")},
               "shape": a.shape, "samples": n, "samples_per_step": per_step,
               "tokens_per_step_mean": float(np.mean(step_tokens)),
               "model_flops_timed": flops_timed, "peak_tflops": peak, "runs": {}}

    if not a.skip_loom:
        results["runs"]["loom"] = run_loom(a, work, model_dir, data, per_step, step_tokens)
        if a.sync_count:
            results["sync_count"] = count_loom(a, work, run_loom, model_dir, data, per_step,
                                               step_tokens)
        if a.profile:
            results["profile"] = profile_loom(a, work, model_dir, data, per_step, step_tokens)
    if not a.skip_hf:
        results["runs"]["hf-padded"] = run_hf(a, work, model_dir, data, order, per_step,
                                              "pad", probe)
        if (probe.get("flash_attn") and a.device == "cuda") or a.hf_flatten:
            results["runs"]["hf-flattened"] = run_hf(a, work, model_dir, data, order, per_step,
                                                     "flatten", probe)
        else:
            results["runs"]["hf-flattened"] = {
                "skipped": "flash-attn not installed" if a.device == "cuda" else "CPU (needs flash-attn)"}

    for name, r in results["runs"].items():
        if r.get("time"):
            r["tokens_per_s"] = sum(step_tokens[a.warmup:]) / r["time"]
            # The median of the timed steps' tokens/s: robust to a busy, shared machine.
            times = ([x["step_s"] for x in r["steps"]] if name == "loom" else r["step_s"])
            rates = [t / dt for t, dt in zip(step_tokens, times) if dt > 0][a.warmup:]
            r["tokens_per_s_median"] = float(np.median(rates)) if rates else None
            r["model_tflops"] = flops_timed / r["time"] / 1e12
            if peak:
                r["mfu"] = r["model_tflops"] / peak
    report(a, results, lengths, step_tokens, hf_padded, mean_len)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
        log(f"results written to {a.json}")


def git_describe(trainer):
    # tools/device_bundle.sh's bundle: ROOT/wrap/trainer beside ROOT/COMMIT.
    commit = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(trainer))), "COMMIT")
    if os.path.exists(commit):
        with open(commit) as f:
            return f.read().strip() + " (device bundle)"
    try:
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(trainer))))
        out = subprocess.run(["git", "-C", src, "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if not out:
            return None
        out = out if len(out) <= 60 else out[:57] + "..."
        return out + (" + uncommitted changes" if dirty else "")
    except Exception:
        return None


def report(a, res, lengths, step_tokens, hf_padded, mean_len):
    s, runs, cuda = a.shape, res["runs"], a.device == "cuda"
    v = res["versions"]
    print(f"\n== speed_bench --case {a.case}: Loom vs Hugging Face Trainer + PEFT ==")
    print(f"device: {a.device}: {res['device_name']}")
    print(f"versions: torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, "
          f"flash-attn {v['flash_attn'] or 'not installed'}, python {v['python']}; "
          f"Loom {res['loom_commit'] or '?'} ({a.trainer})")
    what = "LoRA r16 alpha 32 all-linear, dropout 0" if a.method == "lora" else "full fine-tuning"
    print(f"model: {a.shape_name} shape, random weights: {s['num_hidden_layers']} layers, hidden "
          f"{s['hidden_size']}, intermediate {s['intermediate_size']}, heads "
          f"{s['num_attention_heads']}/{s['num_key_value_heads']} x {s['head_dim']}, vocab "
          f"{s['vocab_size']}, tied; {total_params(s) / 1e9:.3f} B params; {what}"
          + (f" ({lora_params(s) / 1e6:.2f} M trainable)" if a.method == "lora" else ""))
    print(f"data: {res['samples']} samples, lengths {int(lengths.min())}-{int(lengths.max())} "
          f"(median {int(np.median(lengths))}, mean {mean_len:.0f}; fixed seed), "
          f"{a.steps} steps x {res['samples_per_step']} samples "
          f"(mean {res['tokens_per_step_mean']:.0f} real tokens/step), lr {a.lr} constant; "
          f"first {a.warmup} step(s) not timed")
    dt = "bf16" if cuda else "fp32"
    ckpt = "on" if a.checkpointing else "off"
    print(f"loom: packed rows of {a.seq_len}, micro_batch {a.micro_batch} row(s), {dt}, "
          f"loss chunk {a.loss_chunk}, gradient checkpointing {ckpt}, 1 rank")
    hf_dtype = "fp32" if not cuda else (
        f"{a.hf_full_dtype} weights + bf16 autocast" if a.method == "full"
        else "bf16 base + fp32 adapters, bf16 autocast")
    print(f"hf:   {a.hf_micro_batch} samples per micro-batch x "
          f"{res['samples_per_step'] // a.hf_micro_batch} accumulation, attn {a.attn}, "
          f"{hf_dtype}, optim {a.optim}, gradient checkpointing {ckpt}; padded per micro-batch "
          f"(DataCollatorForSeq2Seq): {hf_padded / sum(step_tokens):.2f}x the real tokens")

    mem_head = "peak GiB" if cuda else "peak RSS GiB"
    print()
    print(f"{'run':<14}{'tokens/s':>10}{'step s':>9}{mem_head:>14}"
          f"{'median':>8}{'tensors GiB' if not cuda else 'reserved GiB':>14}{'loaded GiB':>12}"
          f"{'MFU' if cuda else 'GFLOP/s':>9}{'loss@1':>9}")
    for name, r in runs.items():
        if "skipped" in r:
            print(f"{name:<14}skipped: {r['skipped']}")
            continue
        if "error" in r or not r.get("time"):
            print(f"{name:<14}FAILED (exit {r.get('rc')}), log {r.get('log')}:")
            print("    " + (r.get("error") or "no timed steps").strip().replace("\n", "\n    ")[-3000:])
            continue
        step_s = r["time"] / r["timed_steps"]
        if name == "loom":
            mem = r.get("peak_tensor") if cuda else r.get("rss")
            other = r.get("peak_memory") if cuda else r.get("peak_tensor")
            if cuda:
                other = None  # Loom's peak_memory_bytes on CUDA is the same allocator peak
        else:
            mem = r.get("peak") if cuda else r.get("rss")
            other = r.get("peak_reserved") if cuda else None
        perf = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else (
            f"{r['model_tflops'] * 1e3:.1f}" if not cuda else f"{r['model_tflops']:.0f}TF")
        loss1 = f"{r['loss1']:.4f}" if isinstance(r.get("loss1"), (int, float)) else "-"
        r["memory_compared"] = mem
        med = f"{r['tokens_per_s_median']:.0f}" if r.get("tokens_per_s_median") else "-"
        print(f"{name:<14}{r['tokens_per_s']:>10.0f}{step_s:>9.3f}{gib(mem):>14}{med:>8}{gib(other):>14}"
              f"{gib(r.get('loaded')):>12}{perf:>9}{loss1:>9}")
    lo, hf = runs.get("loom", {}), runs.get("hf-padded", {})
    ratios = {}
    for hname in ("hf-padded", "hf-flattened"):
        h = runs.get(hname, {})
        if lo.get("tokens_per_s") and h.get("tokens_per_s"):
            ratios[hname] = {"tokens_per_s": lo["tokens_per_s"] / h["tokens_per_s"]}
            if lo.get("memory_compared") and h.get("memory_compared"):
                ratios[hname]["peak_memory"] = lo["memory_compared"] / h["memory_compared"]
            if lo.get("tokens_per_s_median") and h.get("tokens_per_s_median"):
                ratios[hname]["tokens_per_s_median"] = \
                    lo["tokens_per_s_median"] / h["tokens_per_s_median"]
            rm = ratios[hname].get("peak_memory")
            rmed = ratios[hname].get("tokens_per_s_median")
            print(f"{'loom/' + hname:<14}{ratios[hname]['tokens_per_s']:>9.2f}x{'':>9}"
                  f"{(f'{rm:.2f}x' if rm else '-'):>14}{(f'{rmed:.2f}x' if rmed else '-'):>8}")
    res["ratios"] = ratios

    print()
    print("tokens/s: real tokens of the timed steps / their time; median: the median of the "
          "timed steps' own tokens/s (steadier when the machine is shared).")
    if cuda:
        print("peak GiB: the CUDA caching allocator's peak of allocated tensor bytes over the "
              "process (HF: torch.cuda.max_memory_allocated; Loom: metrics peak_tensor_bytes); "
              "CUDA context not included. reserved: HF's max_memory_reserved.")
        print(f"MFU: model FLOPs ({'4N' if a.method == 'lora' else '6N'} + causal attention per "
              f"document) / time / {res['peak_tflops'] or '?'} TFLOP/s dense bf16"
              + ("" if res["peak_tflops"] else " (unknown GPU: pass --peak-tflops)"))
    else:
        print("peak RSS GiB: each process's peak resident set (getrusage of the child: "
              "libraries, Python and model loading included), the same measure on both sides; "
              "tensors GiB: Loom's counting allocator's peak of live tensor bytes (HF has none).")
        if hf.get("rss_imports"):
            print(f"  (HF's Python with torch/transformers/peft imported, before the model: "
                  f"{gib(hf['rss_imports'])} GiB resident)")
        print(f"GFLOP/s: model FLOPs ({'4N' if a.method == 'lora' else '6N'} + causal attention "
              "per document) per second.")
    if lo.get("order_check"):
        ok, total = lo["order_check"]
        print(f"same samples per step: Loom's reported tokens match this script's order on "
              f"{ok}/{total} steps" + ("" if ok == total else " (MISMATCH: the planner changed?)"))
    tl, th = lo.get("trainable"), hf.get("trainable")
    if tl and th:
        print(f"trainable parameters: loom {tl}, hf {th}" + ("" if tl == th else " (DIFFER)"))
    if lo.get("steps"):
        timed = [x for x in lo["steps"] if x["step"] > a.warmup]
        comp = sum(x.get("compute_s") or 0 for x in timed)
        wait = sum(x.get("data_wait_s") or 0 for x in timed)
        sync = sum(x.get("grad_sync_s") or 0 for x in timed)
        tot = lo["time"]
        print(f"loom timed steps: {tot:.2f} s = forward/backward {comp:.2f} s + data wait "
              f"{wait:.2f} s + grad sync {sync:.2f} s + rest (clip, optimizer, metrics) "
              f"{tot - comp - wait - sync:.2f} s")
    if res.get("sync_count"):
        print(report_line(res["sync_count"]))
    for name, r in runs.items():
        if r.get("wall"):
            print(f"{name}: process wall {r['wall']:.0f} s (load, {a.steps} steps, save)")
    if res.get("profile"):
        p = res["profile"]
        print(f"\nwhere Loom's step {a.warmup + 1} went (torch's profiler; the trace: "
              f"{p.get('trace')}):" if "table" in p else f"\nprofile: {p['error']}")
        if "table" in p:
            print(p["table"].rstrip())


if __name__ == "__main__":
    main()

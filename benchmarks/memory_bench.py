#!/usr/bin/env python3
"""Memory and speed of QLoRA vs LoRA vs full fine-tuning on one device, side by side, with
Loom's own estimate (the one `--dry-run` prints) next to each measured peak.

    .venv/bin/python benchmarks/memory_bench.py [--device cpu|cuda] [--dtype fp32|bf16]
        [--layers 28] [--seq-len 2048] [--micro-batch 1] [--checkpointing] [--steps 4]
        [--loss-chunk 2048] [--methods qlora,lora,full] [--hf]

The model is Qwen3-1.7B-shaped (hidden 2048, intermediate 6144, 16/8 heads of 128, vocab
151936, tied embeddings; --layers of 28 by default), with random weights, made here with
transformers in bf16; the data are random token rows of --seq-len. Each method trains
--steps steps of one micro-batch with the same LoRA (r 16, all-linear); the first step is
left out of the speed. Measured: the tensors resident once the model is loaded ("base" for
LoRA/QLoRA, the model and masters for full), the peak of tensor bytes over the run (CUDA:
the caching allocator's peak; CPU: Loom's counting allocator), and tokens/s. --hf also runs
Hugging Face transformers + PEFT (+ bitsandbytes for QLoRA) on the same shapes and data (its
peak from torch.cuda.max_memory_allocated on CUDA; on the CPU only its speed is comparable).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QWEN3_1_7B = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


def gib(n):
    return f"{n / 2**30:7.2f}"


def make_model(out, layers):
    import torch
    import transformers
    config = transformers.Qwen3Config(**QWEN3_1_7B, num_hidden_layers=layers,
                                      layer_types=["full_attention"] * layers)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = transformers.Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def make_data(path, seq_len, rows, vocab):
    import h5py
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, vocab, size=rows * seq_len, dtype=np.int32)
    mask = np.ones(rows * seq_len, dtype=np.uint8)
    mask[::seq_len] = 0  # a sample's first token is never a target
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=tokens, chunks=True)
        f.create_dataset("loss_mask", data=mask, chunks=True)
        f.create_dataset("offsets", data=np.arange(rows + 1, dtype=np.int64) * seq_len)
        f.create_dataset("loss_tokens", data=np.full(rows, seq_len - 1, dtype=np.int32))
        # The layout of include/loom/data/hdf5_dataset.hpp (as tests/python/hdf5_dataset_tool.py).
        f.attrs["format"] = "loom-tokens"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["vocab_size"] = np.int64(vocab)
        f.attrs["tokenizer_hash"] = ""
        f.attrs["eos_id"] = np.int64(1)
        f.attrs["pad_id"] = np.int64(0)
        f.attrs["source_files"] = []
        f.attrs["template"] = ""
        f.attrs["created"] = "2026-01-01T00:00:00Z"
        f.attrs["num_samples"] = np.int64(rows)
        f.attrs["num_tokens"] = np.int64(rows * seq_len)
        f.attrs["num_loss_tokens"] = np.int64(rows * (seq_len - 1))


def run_loom(a, work, model, data, method):
    out = os.path.join(work, method)
    shutil.rmtree(out, ignore_errors=True)
    dtype = a.dtype
    cfg = os.path.join(work, f"{method}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""run: {{name: {method}, output_dir: {out}, seed: 1}}
model: {{path: {model}, dtype: {dtype}, gradient_checkpointing: {str(a.checkpointing).lower()}}}
finetune: {{method: {method}, lora: {{r: 16, alpha: 32, dropout: 0.0, targets: all-linear}}}}
data: {{train: {data}, seq_len: {a.seq_len}, packing: false}}
train: {{global_batch_size: {a.micro_batch}, max_steps: {a.steps}, lr: 1.0e-4, log_every: 1}}
checkpoint: {{every: 0, keep: 1, resume: never}}
cluster: {{backend: mpi, balance: static, ranks: [{{device: {a.device}, micro_batch: {a.micro_batch}, loss_chunk_tokens: {a.loss_chunk}}}]}}
""")
    trainer = os.environ.get("LOOM_TRAINER", os.path.join(ROOT, "build/src/trainer"))
    t0 = time.time()
    r = subprocess.run([trainer, "--config", cfg, "--log-level", "warn"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        return {"error": (r.stdout + r.stderr)[-2000:]}
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    est = next(r for r in rows if "memory_estimate" in r)["memory_estimate"][0]
    loaded = next(r for r in rows if "loaded_tensor_bytes" in r)["loaded_tensor_bytes"][0]
    steps = [r for r in rows if "tokens_per_s" in r]
    timed = steps[1:] or steps
    return {"loaded": loaded, "peak": max(s["ranks"][0]["peak_tensor_bytes"] for s in steps),
            "rss": max(s["ranks"][0]["peak_memory_bytes"] for s in steps),
            "estimate": est["tensors_bytes"], "estimate_total": est["total_bytes"],
            "estimate_base": est["base_bytes"],
            "tok_s": statistics.median(s["tokens_per_s"] for s in timed),
            "step_s": statistics.median(s["step_s"] for s in timed), "wall": time.time() - t0}


def run_hf(a, model, data, method):
    """transformers + PEFT (+ bitsandbytes) on the same rows: what these users run today."""
    code = f"""
import json, statistics, time, torch, h5py
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
dev = {a.device!r}
dtype = torch.float32 if {a.dtype!r} == "fp32" else torch.bfloat16
kw = dict(dtype=dtype, device_map=dev)
if {method!r} == "qlora":
    kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
model = AutoModelForCausalLM.from_pretrained({model!r}, **kw)
if {a.checkpointing!r}:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={{"use_reentrant": True}})
    model.enable_input_require_grads()
if {method!r} != "full":
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules="all-linear"))
loaded = torch.cuda.memory_allocated() if dev == "cuda" else 0
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
with h5py.File({data!r}) as f:
    toks = torch.from_numpy(f["tokens"][:]).long().view(-1, {a.seq_len})
times = []
for step in range({a.steps}):
    batch = toks[step * {a.micro_batch}:(step + 1) * {a.micro_batch}].to(dev)
    t0 = time.time()
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    if dev == "cuda": torch.cuda.synchronize()
    times.append(time.time() - t0)
timed = times[1:] or times
peak = torch.cuda.max_memory_allocated() if dev == "cuda" else 0
print(json.dumps({{"loaded": loaded, "peak": peak,
                  "tok_s": {a.micro_batch} * {a.seq_len} / statistics.median(timed),
                  "step_s": statistics.median(timed)}}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stdout + r.stderr)[-1500:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--loss-chunk", type=int, default=2048)
    ap.add_argument("--methods", default="qlora,lora,full")
    ap.add_argument("--hf", action="store_true")
    ap.add_argument("--work", help="keep the model and runs here (default: a temp folder)")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="loom-membench-")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "model")
    if not os.path.exists(os.path.join(model, "config.json")):
        n = make_model(model, a.layers)
        print(f"model: Qwen3-1.7B shapes, {a.layers} layers, {n / 1e9:.3f} B parameters (bf16 on disk)")
    data = os.path.join(work, "data.h5")
    make_data(data, a.seq_len, a.micro_batch * a.steps, QWEN3_1_7B["vocab_size"])
    print(f"device {a.device}, compute {a.dtype}, seq_len {a.seq_len}, micro_batch {a.micro_batch}, "
          f"gradient checkpointing {'on' if a.checkpointing else 'off'}, loss chunk {a.loss_chunk}, "
          f"{a.steps} steps (first not timed)")
    hdr = (f"{'run':<14}{'resident GiB':>13}{'peak GiB':>10}{'estimate':>10}{'est/peak':>9}"
           f"{'tokens/s':>10}{'step s':>8}")
    print(hdr)
    results = {}
    for method in a.methods.split(","):
        res = run_loom(a, work, model, data, method)
        results[method] = res
        if "error" in res:
            print(f"{'loom ' + method:<14} failed: {res['error'][-400:]}")
            continue
        print(f"{'loom ' + method:<14}{gib(res['loaded']):>13}{gib(res['peak']):>10}"
              f"{gib(res['estimate']):>10}{res['estimate'] / res['peak']:>9.2f}"
              f"{res['tok_s']:>10.1f}{res['step_s']:>8.2f}", flush=True)
        if a.hf:
            h = run_hf(a, model, data, method)
            if "error" in h:
                print(f"{'hf ' + method:<14} failed: {h['error'][-400:]}")
            else:
                peak = gib(h["peak"]) if h["peak"] else "      -"
                loaded = gib(h["loaded"]) if h["loaded"] else "      -"
                print(f"{'hf ' + method:<14}{loaded:>13}{peak:>10}{'':>10}{'':>9}"
                      f"{h['tok_s']:>10.1f}{h['step_s']:>8.2f}", flush=True)
    q, l = results.get("qlora", {}), results.get("lora", {})
    if "loaded" in q and "loaded" in l:
        print(f"qlora / lora: resident base {q['loaded'] / l['loaded']:.3f}x, "
              f"step time {q['step_s'] / l['step_s']:.2f}x")
    for m, res in results.items():
        if "estimate_total" in res and a.device == "cuda":
            print(f"{m}: estimate with CUDA context {gib(res['estimate_total']).strip()} GiB")


if __name__ == "__main__":
    main()

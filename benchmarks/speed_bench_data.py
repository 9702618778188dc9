"""speed_bench.py's shared parts: running a child process, Loom's epoch order (recomputed in
Python), the bench's samples and their HDF5 file, the random model, the FLOP counts, and
Loom's run (its config, its metrics). See speed_bench.py for what the benchmark measures.
"""
import copy
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

MASK64 = (1 << 64) - 1
# The children (--role probe|model|hf) run the entry script, whichever module starts them.
ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "speed_bench.py")


# ----------------------------------------------------------------------------- helpers

def log(msg):
    print(f"[speed_bench] {msg}", file=sys.stderr, flush=True)


def child_env():
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")
    return env


def run_child(cmd, log_path, timeout, env=None):
    """Runs cmd with output to log_path; returns (exit code, peak RSS bytes of that process, s).
    os.wait4 gives that child's own rusage (ru_maxrss: its peak resident set). `env`: entries
    added to the child's environment."""
    t0 = time.time()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(child_env(), **(env or {})),
                                start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.time() - t0 > timeout:
                log(f"timeout after {timeout} s: {' '.join(cmd[:3])} ...; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return proc.returncode, usage.ru_maxrss * 1024, time.time() - t0


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------- Loom's epoch order, in Python

class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound):
        threshold = ((1 << 64) - bound) % bound
        while True:
            r = self.next()
            if r >= threshold:
                return r % bound


def mix64(x):
    return SplitMix64(x).next()


def loom_epoch_order(n, seed, epoch=0):
    """src/data/planner.cpp buildLayout: Fisher-Yates over the non-empty samples."""
    order = list(range(n))
    rng = SplitMix64(mix64(seed) ^ mix64((epoch + 0x5851F42D4C957F2D) & MASK64))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


# ------------------------------------------------------------------------------ data, model

def make_lengths(a, n):
    import numpy as np
    rng = np.random.default_rng(1234)
    x = rng.lognormal(mean=math.log(a.median_len), sigma=0.7, size=n)
    return np.clip(np.round(x), a.min_len, a.max_len).astype(np.int64)


def write_data(path, lengths, vocab):
    """Loom's HDF5 token file (docs/DESIGN.md "Prepared data", as memory_bench.py writes it)."""
    import h5py
    import numpy as np
    rng = np.random.default_rng(99)
    n = len(lengths)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    tokens = rng.integers(3, vocab, size=int(offsets[-1]), dtype=np.int32)
    mask = np.zeros(int(offsets[-1]), dtype=np.uint8)
    loss_tokens = np.zeros(n, dtype=np.int32)
    for i, length in enumerate(lengths):
        prompt = max(1, int(length * rng.uniform(0.2, 0.6)))  # prompt: no loss
        mask[offsets[i] + prompt:offsets[i + 1]] = 1
        loss_tokens[i] = int(length) - prompt
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=tokens, chunks=True)
        f.create_dataset("loss_mask", data=mask, chunks=True)
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("loss_tokens", data=loss_tokens)
        f.attrs["format"] = "loom-tokens"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["vocab_size"] = np.int64(vocab)
        f.attrs["tokenizer_hash"] = ""
        f.attrs["eos_id"] = np.int64(1)
        f.attrs["pad_id"] = np.int64(0)
        f.attrs["source_files"] = []
        f.attrs["template"] = ""
        f.attrs["created"] = "2026-01-01T00:00:00Z"
        f.attrs["num_samples"] = np.int64(n)
        f.attrs["num_tokens"] = np.int64(offsets[-1])
        f.attrs["num_loss_tokens"] = np.int64(loss_tokens.sum())


def matmul_params(s):
    """Weights that multiply every token: the decoder layers' projections + lm_head."""
    h, q, kv = s["hidden_size"], s["num_attention_heads"] * s["head_dim"], \
        s["num_key_value_heads"] * s["head_dim"]
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * s["intermediate_size"]
    return s["num_hidden_layers"] * per_layer + s["vocab_size"] * h


def total_params(s):
    h = s["hidden_size"]
    norms = s["num_hidden_layers"] * (2 * h + 2 * s["head_dim"]) + h
    return matmul_params(s) + norms  # tied: the embedding is lm_head


def lora_params(s, r=16):
    h, q, kv, i = s["hidden_size"], s["num_attention_heads"] * s["head_dim"], \
        s["num_key_value_heads"] * s["head_dim"], s["intermediate_size"]
    per = r * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h))
    return s["num_hidden_layers"] * per


def model_flops(s, method, doc_lengths):
    """Useful FLOPs of one optimizer step over these documents (see the module docstring)."""
    tokens = sum(doc_lengths)
    k = 6 if method == "full" else 4
    attn_fwd = sum(4 * s["num_attention_heads"] * s["head_dim"] * L * (L + 1) / 2
                   for L in doc_lengths) * s["num_hidden_layers"]
    return k * matmul_params(s) * tokens + 3 * attn_fwd


# ---------------------------------------------------------------------- the model (child role)

def role_model(spec_path):
    import torch
    import transformers
    with open(spec_path) as f:
        spec = json.load(f)
    s = spec["shape"]
    config = transformers.Qwen3Config(
        **s, max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        layer_types=["full_attention"] * s["num_hidden_layers"])
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = transformers.Qwen3ForCausalLM(config)
    model = model.to(torch.bfloat16 if spec["disk_dtype"] == "bf16" else torch.float32)
    model.save_pretrained(spec["out"], safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"params": n}))


# ---------------------------------------------------------------------------- Loom's run

def run_loom(a, work, model_dir, data, batch_samples, step_tokens, tag="loom", env=None,
             train_extra=""):
    """Loom's run of a.steps steps in work/<tag>-run (config <tag>.yaml, log <tag>.log);
    train_extra: more keys of its train section (", key: value")."""
    out = os.path.join(work, f"{tag}-run")
    shutil.rmtree(out, ignore_errors=True)
    cfg = os.path.join(work, f"{tag}.yaml")
    dtype = "bf16" if a.device == "cuda" else "fp32"
    with open(cfg, "w") as f:
        f.write(f"""# written by benchmarks/speed_bench.py
run: {{name: speed-bench, output_dir: {out}, seed: {a.seed}}}
model: {{path: {model_dir}, dtype: {dtype}, gradient_checkpointing: {str(a.checkpointing).lower()}}}
finetune: {{method: {a.method}, lora: {{r: 16, alpha: 32, dropout: 0.0, targets: all-linear}}}}
data: {{train: {data}, seq_len: {a.seq_len}, packing: true}}
train: {{global_batch_size: {batch_samples}, max_steps: {a.steps}, lr: {a.lr}, lr_schedule: constant, warmup_steps: 0, weight_decay: 0.0, max_grad_norm: 1.0, log_every: 1{train_extra}}}
checkpoint: {{every: 0, keep: 1, resume: never}}
cluster: {{balance: static, ranks: [{{device: {a.device}, micro_batch: {a.micro_batch}, loss_chunk_tokens: {a.loss_chunk}}}]}}
""")
    cmd = [a.trainer, "--config", cfg, "--log-level", "info"]
    if a.mpirun:
        cmd = ["mpirun", "-np", "1", "--allow-run-as-root"] + cmd
    log("loom: " + " ".join(cmd))
    log_path = os.path.join(work, f"{tag}.log")
    rc, rss, wall = run_child(cmd, log_path, a.timeout, env)
    res = {"rc": rc, "rss": rss, "wall": wall, "config": cfg, "log": log_path}
    if rc != 0:
        res["error"] = tail(res["log"])
        return res
    rows = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    steps = [r for r in rows if "step_s" in r and "step" in r]
    timed = [r for r in steps if r["step"] > a.warmup]
    rank = lambda r, k: (r.get("ranks") or [{}])[0].get(k)
    res["steps"] = [{"step": r["step"], "tokens": r.get("tokens"), "step_s": r["step_s"],
                     "loss": r.get("loss"), "compute_s": rank(r, "compute_s"),
                     "data_wait_s": rank(r, "data_wait_s"), "grad_sync_s": rank(r, "grad_sync_s")}
                    for r in steps]
    res["time"] = sum(r["step_s"] for r in timed)
    res["timed_steps"] = len(timed)
    res["tokens"] = sum(r.get("tokens", 0) for r in timed)
    tensor_peaks = [rank(r, "peak_tensor_bytes") for r in steps if rank(r, "peak_tensor_bytes")]
    mem_peaks = [rank(r, "peak_memory_bytes") for r in steps if rank(r, "peak_memory_bytes")]
    res["peak_tensor"] = max(tensor_peaks) if tensor_peaks else None
    res["peak_memory"] = max(mem_peaks) if mem_peaks else None
    for r in rows:
        if "loaded_tensor_bytes" in r:
            res["loaded"] = r["loaded_tensor_bytes"][0]
        if "memory_estimate" in r:
            res["estimate"] = r["memory_estimate"][0].get("tensors_bytes")
    res["loss1"] = steps[0].get("loss") if steps else None
    # Is every step the samples this script gave HF? (Loom's tokens per step vs ours.)
    got = [r.get("tokens") for r in steps]
    res["order_check"] = sum(1 for g, e in zip(got, step_tokens) if g == e), len(step_tokens)
    m = re.search(r"(\d+) trainable parameters", tail(res["log"], 400))
    res["trainable"] = int(m.group(1)) if m else None
    return res


def profile_loom(a, work, *run_args):
    """One more Loom run, of a.warmup + 1 steps, the last traced by torch's profiler
    (train.profile_steps); returns {"table": rank 0's table} or {"error": ...}."""
    b = copy.copy(a)
    b.steps = a.warmup + 1
    r = run_loom(b, work, *run_args, tag="profile",
                 train_extra=f", profile_start: {b.steps}, profile_steps: 1")
    if r["rc"] != 0:
        return {"error": f"the profiled run failed (exit {r['rc']}), log {r['log']}"}
    table = os.path.join(work, "profile-run", "profile", "rank-0.txt")
    if not os.path.exists(table):
        return {"error": f"the profiled run wrote no {table}"}
    with open(table) as f:
        return {"table": f.read(), "trace": os.path.join(os.path.dirname(table), "rank-0.trace.json")}

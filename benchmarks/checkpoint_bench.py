#!/usr/bin/env python3
"""How long a large full fine-tuning checkpoint takes, and whether a stop signal through
launch/local.sh outlasts it: a Qwen3-0.6B-shaped model (random weights, made by
transformers), full fine-tuning on one CPU rank, short samples.

    .venv/bin/python benchmarks/checkpoint_bench.py [--work DIR] [--steps-before-signal 1]

1. The trainer runs under launch/local.sh with checkpoint.every 1; after the first step's
   checkpoint it prints the write time and size (the "checkpoint ... written in" log line).
2. Once a step is logged, SIGTERM goes to local.sh (as a user's `kill` or Ctrl-C would):
   the rank finishes the step, writes its checkpoint and exits. Printed: the exit status,
   the time from the signal to the exit, and whether the checkpoint is complete (every file
   of trainable.safetensors / optimizer.safetensors readable, trainer_state.json present).
Beside it, for comparison, what a SIGTERM to mpirun itself allows: Open MPI's
odls_base_sigkill_timeout (1 s by default) before SIGKILL.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speed_bench_data import write_data  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QWEN3_0_6B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                  head_dim=128, tie_word_embeddings=True, max_position_embeddings=4096)


def make_model(path):
    if os.path.exists(os.path.join(path, "config.json")):
        return
    import torch
    import transformers
    torch.manual_seed(0)
    config = transformers.Qwen3Config(**QWEN3_0_6B, torch_dtype="bfloat16")
    model = transformers.Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: Qwen3-0.6B shape, {n / 1e6:.0f} M parameters (bf16 on disk) in {path}")


def steps_logged(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return sum(1 for line in f if '"step_s"' in line)
    except FileNotFoundError:
        return 0


def complete(checkpoint):
    """Every safetensors file's header and size agree; trainer_state.json parses."""
    import safetensors
    for name in ("trainable.safetensors", "optimizer.safetensors"):
        with safetensors.safe_open(os.path.join(checkpoint, name), "pt") as f:
            for key in f.keys():
                f.get_slice(key)
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        json.load(f)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/loom-checkpoint-bench")
    ap.add_argument("--trainer", default=os.path.join(ROOT, "build", "src", "trainer"))
    ap.add_argument("--steps-before-signal", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "model")
    make_model(model)
    data = os.path.join(a.work, "train.h5")
    write_data(data, [96] * 64, QWEN3_0_6B["vocab_size"])
    run = os.path.join(a.work, "run")
    subprocess.run(["rm", "-rf", run], check=True)
    config = os.path.join(a.work, "bench.yaml")
    with open(config, "w") as f:
        f.write(f"""# written by benchmarks/checkpoint_bench.py
run: {{name: checkpoint-bench, output_dir: {run}, seed: 1}}
model: {{path: {model}, dtype: fp32}}
finetune: {{method: full}}
data: {{train: {data}, seq_len: 128, packing: true}}
train: {{global_batch_size: 2, max_steps: 50, lr: 1e-5, warmup_steps: 0, log_every: 1}}
checkpoint: {{every: 1, keep: 1, resume: never}}
cluster: {{backend: mpi, balance: static, ranks: [{{device: cpu, micro_batch: 2}}]}}
""")
    log_path = os.path.join(a.work, "local.log")
    env = dict(os.environ, LOOM_TRAINER=a.trainer)
    started = time.time()
    with open(log_path, "w") as out:
        job = subprocess.Popen([os.path.join(ROOT, "launch", "local.sh"), "1", config],
                               stdout=out, stderr=subprocess.STDOUT, env=env)
        while steps_logged(run) < a.steps_before_signal and job.poll() is None:
            time.sleep(0.2)
        print(f"{steps_logged(run)} step(s) logged after {time.time() - started:.0f} s: "
              "SIGTERM to launch/local.sh")
        signalled = time.time()
        job.send_signal(signal.SIGTERM)
        rc = job.wait()
        stop_s = time.time() - signalled
    text = open(log_path).read()
    writes = re.findall(r"checkpoint (\S+) \(([^)]+)\) written in ([0-9.]+) s", text)
    print("checkpoint writes (size, seconds):")
    for path, size, seconds in writes:
        print(f"  {os.path.basename(path)}: {size} in {seconds} s")
    last = writes[-1][0] if writes else None
    ok = bool(last) and complete(last)
    print(f"SIGTERM to local.sh -> exit {rc} after {stop_s:.1f} s; last checkpoint "
          f"{os.path.basename(last) if last else '-'} complete: {ok}")
    print("SIGTERM to mpirun itself: SIGKILL after odls_base_sigkill_timeout = 1 s "
          "(Open MPI 4.1 default), shorter than the write above")
    if rc != 0 or not ok:
        print(text[-3000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

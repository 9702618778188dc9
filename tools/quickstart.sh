#!/usr/bin/env bash
# The quick start, from a fresh clone: installs what is missing, builds, makes a tiny
# Qwen3-architecture model and an alpaca-style dataset (no download), tokenizes it into HDF5
# with `trainer prepare`, and trains a LoRA adapter on two CPU ranks weighted 3:1
# (configs/quickstart.yaml): loss falls, eval loss is reported, the adapter is written to
# runs/quickstart/adapter in PEFT layout. Then `trainer compare` answers two prompts with the
# model before and after, and writes runs/quickstart/compare/report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
trainer=${LOOM_BUILD_DIR:-build}/src/trainer
.venv/bin/python tools/make_tiny_example.py --out examples/tiny
for split in train eval; do
  "$trainer" prepare --tokenizer examples/tiny/model --input "examples/tiny/$split.jsonl" \
    --format alpaca --output "examples/tiny/$split.h5" --seq-len 128 --no-progress
done
launch/local.sh 2 configs/quickstart.yaml --dry-run
# A fresh run each time (the example's run folder only; resume is shown in the README).
rm -rf runs/quickstart
launch/local.sh 2 configs/quickstart.yaml
# Before and after on two prompts (the model is tiny and random: the text is noise that learned
# a little; the path is what this shows).
"$trainer" compare --config configs/quickstart.yaml --prompts examples/tiny/compare.jsonl \
  --max-new-tokens 24
echo "[quickstart] done: adapter in runs/quickstart/adapter, metrics in runs/quickstart/metrics.jsonl" \
  "(TensorBoard: tensorboard --logdir runs), loss curve in runs/quickstart/loss.svg," \
  "before/after report in runs/quickstart/compare/report.html" >&2

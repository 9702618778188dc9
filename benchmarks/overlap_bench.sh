#!/usr/bin/env bash
# Gradient all-reduce overlapped with backward (cluster.overlap_grad_sync: true, buckets
# started from backward hooks) against the same run reducing everything after backward
# (false), in one run: median tokens/s, step time and each rank's time in GradSync::reduce
# (starting what backward did not, then waiting) over the second half of the steps.
# Needs the quick start's example model and data (tools/quickstart.sh); a bigger model with the
# same tokenizer: .venv/bin/python benchmarks/make_bench_model.py /tmp/m, then LOOM_BENCH_MODEL=/tmp/m.
#   benchmarks/overlap_bench.sh [RANKS=2] [DEVICE=cpu|cuda] [METHOD=full|lora] [STEPS=30]
# On GPUs each rank takes cuda:<local rank> (NCCL); on CPU each rank gets one thread (MPI).
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-2} device=${2:-cpu} method=${3:-full} steps=${4:-30}
trainer=${LOOM_TRAINER:-build/src/trainer}
model=${LOOM_BENCH_MODEL:-examples/tiny/model}
data=${LOOM_BENCH_DATA:-examples/tiny/train.h5}
out=$(mktemp -d /tmp/loom-overlap.XXXXXX)
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [[ $device == cpu ]]; then rank_device=cpu backend=mpi dtype=fp32; else rank_device=cuda backend=nccl dtype=bf16; fi
config() {  # name overlap
  cat > "$out/$1.yaml" <<YAML
run: {name: $1, output_dir: $out/$1, seed: 1}
model: {path: $model, dtype: $dtype}
finetune: {method: $method, lora: {r: 16, alpha: 32, dropout: 0.0}}
data: {train: $data, seq_len: 128}
train: {global_batch_tokens: 8192, max_steps: $steps, lr: 1.0e-4, log_every: 1}
checkpoint: {every: 0, keep: 1}
cluster: {backend: $backend, balance: static, overlap_grad_sync: $2, ranks: [{device: $rank_device, micro_batch: 8}]}
YAML
  echo "$out/$1.yaml"
}
summary() {
  python3 - "$out/$1/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
half = rows[len(rows) // 2:]
med = lambda xs: statistics.median(xs)
sync = [med(r["ranks"][k]["grad_sync_s"] for r in half) for k in range(len(half[0]["ranks"]))]
print(f"{med(r['tokens_per_s'] for r in half):10.0f} {med(r['step_s'] for r in half) * 1e3:10.1f}   "
      + " ".join(f"{s * 1e3:.1f}" for s in sync))
PY
}
for overlap in false true; do
  mpirun --bind-to none -np "$ranks" "$trainer" --config "$(config overlap_$overlap $overlap)" --log-level warn
done
printf '%-36s %10s %10s   %s\n' "$ranks ranks, $device, $method" "tokens/s" "step ms" "grad sync ms per rank"
printf '%-36s %s\n' "after backward (overlap false)" "$(summary overlap_false)"
printf '%-36s %s\n' "from backward hooks (overlap true)" "$(summary overlap_true)"
rm -rf "$out"

#!/usr/bin/env bash
# Weighted batch splitting on two CPU ranks of honestly unequal speed: rank 0 alone on core 0,
# rank 1 on core 1 shared with a busy loop (half a core). Prints, from one run: each rank's
# solo throughput under the same conditions it has in the pair, their sum (the ceiling), and
# the pair with equal weights and with cluster.balance: auto, as fractions of the ceiling.
# Needs the quick start's example (tools/quickstart.sh) and 2 cores.
#   benchmarks/balance_bench.sh [STEPS=40] [SEQ_LEN=128] [GLOBAL_BATCH_TOKENS=8192]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40} seq_len=${2:-128} batch_tokens=${3:-8192}
trainer=${LOOM_TRAINER:-build/src/trainer}
model=${LOOM_BENCH_MODEL:-examples/tiny/model}
data=${LOOM_BENCH_DATA:-examples/tiny/train.h5}
out=$(mktemp -d /tmp/loom-balance.XXXXXX)
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
busy=""
cleanup() {
  [[ -n "$busy" ]] && kill "$busy" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
taskset -c 1 bash -c 'while :; do :; done' &
busy=$!

config() {  # name balance
  cat >"$out/$1.yaml" <<YAML
run: {name: $1, output_dir: $out/$1, seed: 1}
model: {path: $model, dtype: fp32}
finetune: {method: lora, lora: {r: 16, alpha: 32, dropout: 0.0}}
data: {train: $data, seq_len: $seq_len}
train: {global_batch_tokens: $batch_tokens, max_steps: $steps, lr: 1.0e-3, log_every: 1}
checkpoint: {every: 0, keep: 1}
cluster: {backend: mpi, balance: $2, ranks: [{device: cpu, micro_batch: 8}]}
YAML
  echo "$out/$1.yaml"
}
# Median tokens/s over the second half of the steps (after the balancer settled).
rate() {
  python3 - "$out/$1/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
half = rows[len(rows) // 2:]
print(f"{statistics.median(r['tokens_per_s'] for r in half):.0f}")
PY
}
weights() {
  python3 - "$out/$1/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"ranks"' in l]
print(" ".join(f"{r['weight']:.3f}" for r in rows[-1]["ranks"]))
PY
}
solo() {  # name core
  mpirun --bind-to none -np 1 taskset -c "$2" "$trainer" --config "$(config "$1" static)" \
    --log-level warn
}
pair() {  # name balance
  local cfg
  cfg=$(config "$1" "$2")
  mpirun --bind-to none -np 1 taskset -c 0 "$trainer" --config "$cfg" --log-level warn : \
    -np 1 taskset -c 1 "$trainer" --config "$cfg" --log-level warn
}
solo solo_fast 0
solo solo_slow 1
pair pair_static static
pair pair_auto auto
fast=$(rate solo_fast) slow=$(rate solo_slow)
ceiling=$((fast + slow))
frac() { python3 -c "print(f'{$1 / $ceiling:.3f}')"; }
printf '%-52s %10s %10s\n' "run (rank 0: core 0; rank 1: core 1 + busy loop)" "tokens/s" "/ceiling"
printf '%-52s %10s\n' "solo, core 0" "$fast"
printf '%-52s %10s\n' "solo, core 1 shared with a busy loop" "$slow"
printf '%-52s %10s %10s\n' "sum of solo throughputs (ceiling)" "$ceiling" "1.000"
printf '%-52s %10s %10s\n' "2 ranks, equal weights (static 1:1)" "$(rate pair_static)" \
  "$(frac "$(rate pair_static)")"
printf '%-52s %10s %10s   final weights %s\n' "2 ranks, balance: auto" "$(rate pair_auto)" \
  "$(frac "$(rate pair_auto)")" "$(weights pair_auto)"

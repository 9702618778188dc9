#!/usr/bin/env bash
# Weighted batch splitting on two CPU ranks of unequal speed (different thread counts):
# tokens/s with equal weights, with cluster.balance: auto, and the sum of each rank's solo
# throughput (the ceiling), in one run. Needs the quick start's example (tools/quickstart.sh).
#   benchmarks/balance_bench.sh [FAST_THREADS=2] [SLOW_THREADS=1] [STEPS=40]
set -euo pipefail
cd "$(dirname "$0")/.."
fast=${1:-2} slow=${2:-1} steps=${3:-40}
trainer=${LOOM_TRAINER:-build/src/trainer}
out=$(mktemp -d /tmp/loom-balance.XXXXXX)
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
config() {  # name balance
  cat > "$out/$1.yaml" <<YAML
run: {name: $1, output_dir: $out/$1, seed: 1}
model: {path: examples/tiny/model, dtype: fp32}
finetune: {method: lora, lora: {r: 16, alpha: 32, dropout: 0.0}}
data: {train: examples/tiny/train.h5, seq_len: 128}
train: {global_batch_tokens: 8192, max_steps: $steps, lr: 1.0e-3, log_every: 1}
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
print(" ".join(f"{r['weight']:.2f}" for r in rows[-1]["ranks"]))
PY
}
OMP_NUM_THREADS=$fast "$trainer" --config "$(config solo_fast static)" --log-level warn
OMP_NUM_THREADS=$slow "$trainer" --config "$(config solo_slow static)" --log-level warn
for b in static auto; do
  mpirun --bind-to none -np 1 -x OMP_NUM_THREADS=$fast "$trainer" --config "$(config pair_$b $b)" --log-level warn : \
         -np 1 -x OMP_NUM_THREADS=$slow "$trainer" --config "$out/pair_$b.yaml" --log-level warn
done
printf '%-44s %10s\n' "run (rank 0: $fast threads, rank 1: $slow)" "tokens/s"
printf '%-44s %10s\n' "solo, $fast threads" "$(rate solo_fast)"
printf '%-44s %10s\n' "solo, $slow thread(s)" "$(rate solo_slow)"
printf '%-44s %10s\n' "sum of solo throughputs (ceiling)" "$(( $(rate solo_fast) + $(rate solo_slow) ))"
printf '%-44s %10s\n' "2 ranks, equal weights (static 1:1)" "$(rate pair_static)"
printf '%-44s %10s   final weights %s\n' "2 ranks, balance: auto" "$(rate pair_auto)" "$(weights pair_auto)"
rm -rf "$out"

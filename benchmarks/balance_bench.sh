#!/usr/bin/env bash
# Weighted batch splitting on two CPU ranks of honestly unequal speed: rank 0 alone on core 0,
# rank 1 on core 1 shared with a busy loop (half a core). The ceiling is the sum of each rank's
# solo throughput under the same conditions it has in the pair. Each round measures, back to
# back:
#   - the solos at the same time (two independent one-rank jobs, pinned as in the pair), so each
#     one runs beside the other core's load as it does in the pair: the ceiling;
#   - the solos one after the other (the other core has only the busy loop), for reference: on
#     a virtual machine the two cores slow each other down (shared caches, memory, frequency),
#     so this sum is above what any two processes reach together;
#   - the pair with equal weights, with the best fixed split (weights in the ratio of the
#     round's concurrent solos, known only after the fact), and with cluster.balance: auto.
# A shared virtual machine drifts by 10-25% within minutes, so rounds repeat the whole set and
# the summary is the median over rounds of each pair's fraction of its round's ceiling.
# LOOM_BENCH_BASELINE=path/to/another/trainer adds a column: balance: auto with that build, in
# the same rounds (to compare two versions of the balancer under the same drift).
# Needs the quick start's example (tools/quickstart.sh) and 2 cores.
#   benchmarks/balance_bench.sh [STEPS=40] [SEQ_LEN=128] [GLOBAL_BATCH_TOKENS=8192] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40} seq_len=${2:-128} batch_tokens=${3:-8192} rounds=${4:-3}
trainer=${LOOM_TRAINER:-build/src/trainer}
model=${LOOM_BENCH_MODEL:-examples/tiny/model}
data=${LOOM_BENCH_DATA:-examples/tiny/train.h5}
out=$(mktemp -d /tmp/loom-balance.XXXXXX)
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
busy=""
cleanup() {
  [[ -n "$busy" ]] && kill "$busy" 2>/dev/null || true
  if [[ -n "${LOOM_BENCH_KEEP:-}" ]]; then echo "runs kept in $out"; else rm -rf "$out"; fi
}
trap cleanup EXIT
taskset -c 1 bash -c 'while :; do :; done' &
busy=$!

config() {  # name balance steps [weight0 weight1]
  local ranks="[{device: cpu, micro_batch: 8}]"
  if [[ $# -ge 5 ]]; then
    ranks="[{match: {local_rank: 0}, device: cpu, micro_batch: 8, weight: $4},"
    ranks+=" {match: {local_rank: 1}, device: cpu, micro_batch: 8, weight: $5}]"
  fi
  cat >"$out/$1.yaml" <<YAML
run: {name: $1, output_dir: $out/$1, seed: 1}
model: {path: $model, dtype: fp32}
finetune: {method: lora, lora: {r: 16, alpha: 32, dropout: 0.0}}
data: {train: $data, seq_len: $seq_len}
train: {global_batch_tokens: $batch_tokens, max_steps: $3, lr: 1.0e-3, log_every: 1}
checkpoint: {every: 0, keep: 1}
cluster: {backend: mpi, balance: $2, ranks: $ranks}
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
print(":".join(f"{r['weight']:.2f}" for r in rows[-1]["ranks"]))
PY
}
one() {  # name core steps: a one-rank job
  mpirun --bind-to none -np 1 taskset -c "$2" "$trainer" --config "$(config "$1" static "$3")" \
    --log-level warn
}
# Both solos at once: rank 1's job runs until rank 0's has finished its steps, then is stopped;
# each rate is the median of its second half, which both spent beside the other.
together() {  # round
  mpirun --bind-to none -np 1 taskset -c 1 "$trainer" --config "$(config "cslow$1" static 100000)" \
    --log-level error >/dev/null 2>&1 &
  local slow=$!
  one "cfast$1" 0 "$steps"
  kill -TERM "$slow" 2>/dev/null || true
  wait "$slow" || true
}
pair() {  # name balance [weight0 weight1]
  local cfg name=$1 balance=$2 exe=${PAIR_TRAINER:-$trainer}
  shift 2
  cfg=$(config "$name" "$balance" "$steps" "$@")
  mpirun --bind-to none -np 1 taskset -c 0 "$exe" --config "$cfg" --log-level warn : \
    -np 1 taskset -c 1 "$exe" --config "$cfg" --log-level warn
}
baseline=${LOOM_BENCH_BASELINE:-}
frac() { python3 -c "print(f'{$1 / $2:.3f}')"; }
summary=$out/summary.txt
printf '%-5s %-23s %-23s | %-20s | %-26s | %-26s%s\n' round "solos together (sum)" \
  "solos apart (sum)" "equal weights" "best fixed split" "balance: auto" \
  "${baseline:+ | auto, LOOM_BENCH_BASELINE}" | tee "$summary"
for ((i = 1; i <= rounds; ++i)); do
  together "$i"
  one "fast$i" 0 "$steps"
  one "slow$i" 1 "$steps"
  f=$(rate "cfast$i") s=$(rate "cslow$i")
  ceiling=$((f + s)) apart=$(($(rate "fast$i") + $(rate "slow$i")))
  w0=$(python3 -c "print(f'{2 * $f / $ceiling:.4f}')")
  w1=$(python3 -c "print(f'{2 * $s / $ceiling:.4f}')")
  pair "equal$i" static
  pair "fixed$i" static "$w0" "$w1"
  pair "auto$i" auto
  extra=""
  if [[ -n "$baseline" ]]; then
    PAIR_TRAINER=$baseline pair "base$i" auto
    extra=$(printf ' | %6s %6s %-12s' "$(rate "base$i")" "$(frac "$(rate "base$i")" "$ceiling")" \
      "$(weights "base$i")")
  fi
  printf '%-5s %-23s %-23s | %6s %6s %-6s | %6s %6s %-12s | %6s %6s %-12s%s\n' "$i" \
    "$f+$s=$ceiling" "$(rate "fast$i")+$(rate "slow$i")=$apart" \
    "$(rate "equal$i")" "$(frac "$(rate "equal$i")" "$ceiling")" "1:1" \
    "$(rate "fixed$i")" "$(frac "$(rate "fixed$i")" "$ceiling")" "$(weights "fixed$i")" \
    "$(rate "auto$i")" "$(frac "$(rate "auto$i")" "$ceiling")" "$(weights "auto$i")" "$extra" |
    tee -a "$summary"
done
python3 - "$summary" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
col = lambda k: statistics.median(float(r[k]) for r in rows)
apart = statistics.median(float(r[2].split("=")[1]) / float(r[1].split("=")[1]) for r in rows)
base = f", baseline's auto {col(17):.3f}" if len(rows[0]) > 17 else ""
print(f"median over {len(rows)} round(s), fraction of the ceiling (solos together): "
      f"equal weights {col(5):.3f}, best fixed split {col(9):.3f}, balance: auto {col(13):.3f}"
      f"{base}  (solos apart sum to {apart:.2f}x the ceiling)")
PY

#!/usr/bin/env bash
# Runs on the device tool's GPU machine, in the repository root, over the bundle that
# tools/device_bundle.sh packed here (carry: [".device", ".whl"]). Nothing is built there.
#
#   bash tools/device_check.sh [STAGE...]     (default: tests lora full)
#
# Stages, each under its own time limit, in the order given:
#   tests    every `gpu` test binary (gtest), one after the other
#   lora     benchmarks/speed_bench.py --case lora-1.7b --sync-count --profile
#   full     benchmarks/speed_bench.py --case full-0.6b --profile
#   cpu      benchmarks/speed_bench.py --case cpu --skip-hf --steps 4 --profile (a rehearsal
#            of the others off the GPU)
# Writes $OUT/summary.txt (versions, the GPU, each stage's result and time, the benchmarks'
# reports) and one log per stage ($OUT/<stage>.log, and $OUT/<stage>.json for the benchmarks):
# 7 files at most, within the device tool's 8. Exit 0 when every stage passed.
# LOOM_DEVICE_PYTHON overrides the Python that holds torch (default: python3).
# The stages' limits (tests 180 s, lora 360 s, full 300 s) add up to more than one device call
# may run (600 s): plan `tests lora` for one call and `full` for the next, or all three in one
# call when time is short (each stage's log reaches $OUT as it is written, so a call cut off at
# its limit still returns the stages before).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/loom-device-out}
logs=/tmp/loom-device-logs  # the small logs; $OUT takes 8 files at most
mkdir -p "$out" "$logs"
summary=$out/summary.txt
say() { echo "$*" | tee -a "$summary"; }
py=${LOOM_DEVICE_PYTHON:-python3}
stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=(tests lora full)
t0=$(date +%s)

# --- Unpack, the pinned reference packages, and the environment.
root=${LOOM_DEVICE_ROOT:-/tmp/loom-device}
rm -rf "$root" && mkdir -p "$root"
tar -C "$root" -xJf .device/loom-device.tar.xz ||
  { say "cannot unpack .device/loom-device.tar.xz (tools/device_bundle.sh makes it; tar needs xz)"; exit 3; }
if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/loom-site .whl/*.whl >"$logs/pip.log" 2>&1 || { say "pip install failed: $(tail -3 "$logs/pip.log")"; exit 3; }
  export PYTHONPATH=/tmp/loom-site${PYTHONPATH:+:$PYTHONPATH}
fi
# shellcheck source=tools/device_env.sh
source tools/device_env.sh "$root" "$py"
w=$root/wrap
say "loom $(cat "$root/COMMIT") on $(hostname), $(date -u +%FT%TZ)"
say "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
versions=$("$w/python3" -c 'import torch, transformers, peft, sys
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (cuda {torch.version.cuda}), "
      f"transformers {transformers.__version__}, peft {peft.__version__}, "
      f"cuda available {torch.cuda.is_available()}")' 2>&1)
say "$versions"
have=$("$w/python3" -c 'import torch; print(torch.__version__)' 2>/dev/null)
if [[ "$have" != "$(cat "$root/TORCH_VERSION")" ]]; then
  say "the bundle was built against torch $(cat "$root/TORCH_VERSION"), this python has $have:"
  say "rebuild it here with tools/device_bundle.sh --torch ${have%%+*}"
  exit 3
fi
if ! "$w/trainer" --version >"$logs/start.log" 2>&1; then
  say "the trainer does not start here:"; tail -5 "$logs/start.log" | tee -a "$summary"
  "$w/ldd" "$root/bin/trainer" | grep -E "not found|GLIBC" | tee -a "$summary"
  exit 3
fi
say "glibc $(ldd --version | head -1 | awk '{print $NF}'), trainer: $(head -1 "$logs/start.log")"
if "$w/mpirun" -np 2 "$w/trainer" --version >"$logs/mpirun.log" 2>&1; then
  say "mpirun -np 2 from the bundle: ok"
else
  say "mpirun -np 2 from the bundle failed: $(tail -3 "$logs/mpirun.log")"
fi

# What the tests need to find (their compiled-in defaults are this machine's build paths).
export LOOM_SOURCE_DIR=$PWD LOOM_BINARY_DIR=/tmp/loom-bin LOOM_PYTHON=$w/python3
export LOOM_TRAINER=$w/trainer LOOM_MPIEXEC=$w/mpirun LOOM_QWEN3_TOKENIZER=/nonexistent
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1
mkdir -p "$LOOM_BINARY_DIR"
# A prebuilt shim for the sync count, should the machine have no C compiler.
if ! command -v cc >/dev/null; then export LOOM_SYNC_COUNT_SHIM=$root/shim/libcuda_sync_count.so; fi

failed=0
run_stage() {  # name, time limit (s), command...
  local name=$1 limit=$2; shift 2
  local s rc
  s=$(date +%s)
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >"$out/$name.log" 2>&1
  rc=$?
  [[ $rc -eq 0 ]] || failed=1
  say "[$name] exit $rc after $(( $(date +%s) - s )) s (limit $limit s)"
}
gpu_tests() {
  local t r rc=0
  for t in "$root"/bin/*_gpu_test; do
    t=$(basename "$t")
    echo "=== $t"
    timeout 120 "$w/$t" --gtest_color=no
    r=$?
    echo "=== $t exit $r"  # a crash or a timeout prints no gtest result line
    [[ $r -eq 0 ]] || rc=1
  done
  return $rc
}
bench() {  # case, json, extra arguments...
  local case=$1 json=$2; shift 2
  "$w/python3" benchmarks/speed_bench.py --case "$case" --trainer "$w/trainer" \
    --out /tmp/loom-bench-"$case" --json "$out/$json" "$@"
}
export -f gpu_tests bench
export w out root
for stage in "${stages[@]}"; do
  case "$stage" in
    tests) run_stage tests 180 gpu_tests
           awk '/^=== / {t=$2} /^=== .* exit [1-9]/ {print "  " $0}
                /^\[ +(OK|FAILED|SKIPPED) +\] [A-Za-z].*\([0-9]+ ms\)$/ {print "  " t ": " $0}' \
             "$out/tests.log" | sort -u | tee -a "$summary" ;;
    lora) run_stage lora 360 bench lora-1.7b lora.json --sync-count --profile ;;
    full) run_stage full 300 bench full-0.6b full.json --profile ;;
    cpu) run_stage cpu 420 bench cpu cpu.json --skip-hf --steps 4 --profile ;;
    *) say "unknown stage '$stage' (tests, lora, full, cpu)"; failed=1 ;;
  esac
  case "$stage" in lora|full|cpu) sed -n '/^== speed_bench/,$p' "$out/$stage.log" >>"$summary"
                                          tail -3 "$out/$stage.log" ;; esac
done
say "device_check: $(( $(date +%s) - t0 )) s in all, $([[ $failed -eq 0 ]] && echo passed || echo FAILED)"
exit $failed

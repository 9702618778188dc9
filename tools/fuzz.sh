#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan; a CMake project of its own,
# into build-fuzz/) and runs each one over its seed corpus (tests/fuzz/corpus/<target>/).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]    each target for SECONDS (default 600), one after another
#   tools/fuzz.sh --short [TARGET...]      each target for a fixed number of inputs (CI, ~2 min)
#   options: --build-dir DIR (default build-fuzz), --jobs N (build jobs)
#
# New inputs that reach new code go to DIR/corpus/<target>/ (kept between runs, so long runs
# continue where the last one stopped; never into the repository), findings (crash-*, leak-*,
# timeout-*, oom-*) to DIR/findings/. It prints per target the inputs run, exec/s and what was
# found (and appends it to DIR/history.log), and exits 1 when anything was found, 77 (ctest:
# skipped) when clang cannot build libFuzzer targets. Reproduce a finding: DIR/<target>_fuzz FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

short=0
seconds=600
build=build-fuzz
jobs=${LOOM_BUILD_JOBS:-$(nproc)}
targets=()
while (($#)); do
  case "$1" in
    --short) short=1 ;;
    --build-dir) build=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    [0-9]*) seconds=$1 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
all=(tokenizer safetensors_header hdf5_index config jsonl_record chat_template)
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "[fuzz] unknown target '$t'; targets: ${all[*]}" >&2; exit 2; }
done

# Inputs per target in --short mode, each about 10-25 s on one core of a CI machine: the seeds
# and some thousands of mutations of them, a smoke test rather than a search. (hdf5_index: its
# corpus only, see below.)
declare -A short_runs=([tokenizer]=20000 [safetensors_header]=200000 [config]=40000
  [jsonl_record]=3000 [chat_template]=100000)

log() { echo "[fuzz] $*" >&2; }

CXX=${LOOM_FUZZ_CXX:-clang++}
CC=${LOOM_FUZZ_CC:-clang}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  >"$probe/probe.cpp"
if ! command -v "$CXX" >/dev/null ||
  ! "$CXX" -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" 2>/dev/null; then
  log "skipped: $CXX cannot build libFuzzer targets (tools/setup.sh installs clang and libclang-rt-dev)"
  exit 77
fi

export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
mkdir -p "$build"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S tests/fuzz -B "$build" -G Ninja -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
    >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
fi
build_start=$SECONDS
cmake --build "$build" -j "$jobs" -- -k 0 "${targets[@]/%/_fuzz}" >"$build/build.log" 2>&1 ||
  { cat "$build/build.log"; exit 1; }
log "built ${#targets[@]} target(s) in $build in $((SECONDS - build_start)) s"

# Scratch space for the files the targets write per input (tmpfs when there is one).
shm=/dev/shm
[[ -d $shm && -w $shm ]] || shm=${TMPDIR:-/tmp}
export LOOM_FUZZ_TMPDIR=$(mktemp -d "$shm/loom-fuzz.XXXXXX")
trap 'rm -rf "$probe" "$LOOM_FUZZ_TMPDIR"' EXIT
# Abort on the first report of any kind; leaks count (LeakSanitizer, checked by libFuzzer).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0}

# The frame a finding happened in, skipping the sanitizers', libFuzzer's and the C/C++ runtime's
# own frames: "libhdf5..." for a fault inside libhdf5, a Loom source file otherwise, empty when
# the input does not fail when replayed alone. Allocations above 256 MB report their stack.
culprit() {
  timeout 120 "$1" -timeout=10 -malloc_limit_mb=256 "$2" 2>&1 | grep -E '^ *#[0-9]+ ' |
    grep -vE ' in (__sanitizer|__asan|__ubsan|__lsan|__interceptor|__cxa|__gnu_cxx|fuzzer::|std::|malloc|calloc|realloc|free|operator new|abort|raise|__pthread|gsignal|pthread_kill|loom::fuzz::failExpectation|__mem|__str)|libc\.so|libstdc\+\+|sysdeps/' |
    head -1 | sed -E 's/^ *#[0-9]+ 0x[0-9a-f]+ (in )?//; s/ \(BuildId.*//' || true
}

mkdir -p "$build/findings"
status=0
printf '%-20s %10s %8s %7s %6s  %s\n' target inputs exec/s seconds new result >&2
for t in "${targets[@]}"; do
  bin=$build/${t}_fuzz
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  # libFuzzer's own exit code for a finding is 77, ctest's "skipped": use 1 instead.
  args=(-timeout=10 -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1
    "-artifact_prefix=$build/findings/$t-")
  [[ -f tests/fuzz/$t.dict ]] && args+=("-dict=tests/fuzz/$t.dict")
  inputs=("$corpus" "tests/fuzz/corpus/$t")
  # hdf5_index mostly runs libhdf5 (Debian's 1.10.8, not instrumented), which crashes, hangs
  # or asks for huge allocations on many damaged files by itself. Such a fault would end a run
  # within seconds and make a CI run depend on luck, so --short replays this target's corpus
  # only, and long runs fork (-fork=1), keep going past faults, and each fault is replayed to
  # tell libhdf5's own (reported, not failing) from Loom's (failing).
  library_faults=0
  [[ $t == hdf5_index ]] && library_faults=1
  before=$(find "$corpus" -type f | wc -l)
  if ((short && library_faults)); then
    inputs=(tests/fuzz/corpus/$t/*)
  elif ((short)); then
    # A fixed seed and input count: the same inputs every CI run; new inputs go to a scratch
    # folder (emptied each time), not to the corpus that long runs keep growing.
    args+=(-seed=1 "-runs=${short_runs[$t]}")
    corpus=$build/corpus-short/$t
    rm -rf "$corpus" && mkdir -p "$corpus"
    inputs=("$corpus" "tests/fuzz/corpus/$t")
    before=0
  else
    args+=("-max_total_time=$seconds")
    ((library_faults)) && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  fi
  start=$SECONDS
  stamp=$(mktemp "$LOOM_FUZZ_TMPDIR/stamp.XXXXXX")
  rc=0
  nice -n "${LOOM_FUZZ_NICE:-0}" "$bin" "${args[@]}" "${inputs[@]}" >"$build/$t.log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/$t.log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$build/$t.log" | tail -1)
  new=$(($(find "$corpus" -type f | wc -l) - before))
  if ((short && library_faults)); then
    runs=$(grep -c '^Executed ' "$build/$t.log" || true)
    speed=$((runs / (took > 0 ? took : 1)))
  elif ((library_faults)); then  # fork mode prints "#<runs>: ... exec/s <n> ..." lines
    last=$(grep -E '^#[0-9]+: cov' "$build/$t.log" | tail -1)
    runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    speed=$(sed -E 's/.* exec\/s ([0-9]+) .*/\1/' <<<"$last")
  fi
  result=ok
  if ((library_faults && !short)); then
    ours=0
    theirs=0
    alone=0
    while IFS= read -r f; do
      where=$(culprit "$bin" "$f")
      if [[ -z $where ]]; then
        alone=$((alone + 1))  # failed only after the inputs before it in the same process
      elif [[ $where == *libhdf5* ]]; then
        theirs=$((theirs + 1))
      else
        ours=$((ours + 1))
        echo "    $f: $where" >&2
      fi
    done < <(find "$build/findings" -name "$t-*" -newer "$stamp" -type f)
    parts=()
    ((ours == 0)) || { status=1; parts+=("FOUND $ours in Loom's code"); }
    ((theirs == 0)) || parts+=("$theirs inside libhdf5, not Loom's")
    ((alone == 0)) || parts+=("$alone not failing when replayed alone")
    ((${#parts[@]} == 0)) || result=$(IFS=';' && echo "${parts[*]}")
  elif ((rc != 0)); then
    status=1
    found=$(sed -n 's/.*Test unit written to //p' "$build/$t.log" | tail -1)
    result="FOUND (exit $rc): ${found:-see $build/$t.log}"
    grep -m3 -E 'ERROR: |runtime error:|fuzz expectation|terminate called|SUMMARY:' \
      "$build/$t.log" | sed 's/^/    /' >&2 || true
  fi
  line=$(printf '%-20s %10s %8s %7s %6s  %s' "$t" "${runs:-?}" "${speed:-?}" "$took" "${new:-?}" \
    "$result")
  echo "$line" >&2
  echo "$(date -u +%FT%TZ) $((short ? 1 : 0)) $line" >>"$build/history.log"
done
((status == 0)) || log "findings in $build/findings/; logs in $build/<target>.log"
exit $status

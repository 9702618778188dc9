#!/usr/bin/env python3
"""Host waits per training step on a CUDA rank, counted at the CUDA runtime.

Loom's step is meant to wait for the device once (the per-step all-gather of statistics).
This counts what libtorch really calls: benchmarks/cuda_sync_count.c, preloaded into the
trainer, counts cudaStreamSynchronize, cudaDeviceSynchronize, cudaEventSynchronize,
blocking cudaMemcpy and cudaFree. Two runs of the same job with a few and with more steps
differ only by the extra steps, so (count_long - count_short) / (steps_long - steps_short)
is the number of host waits per step, set-up and saving excluded. No profiler and no
CUDA_LAUNCH_BLOCKING (which would make every launch a wait) is involved.

    .venv/bin/python benchmarks/sync_count.py --self-test     # the shim, on any machine
    .venv/bin/python benchmarks/speed_bench.py --case lora-1.7b --sync-count

The self-test compiles the shim and a program linked to the torch wheel's libcudart, and
checks that each call is counted (without a GPU the calls fail, and are counted all the same).
"""
import copy
import glob
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
         "cudaMemcpy", "cudaFree"]


def build_shim(work):
    """Compiles cuda_sync_count.c into work/; returns the .so path. LOOM_SYNC_COUNT_SHIM names
    a prebuilt one instead (tools/device_bundle.sh packs one for machines without cc)."""
    if os.environ.get("LOOM_SYNC_COUNT_SHIM"):
        return os.environ["LOOM_SYNC_COUNT_SHIM"]
    out = os.path.join(work, "libcuda_sync_count.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", out,
                    os.path.join(HERE, "cuda_sync_count.c"), "-ldl"], check=True)
    return out


def shim_env(shim, base):
    """Environment entries that make a child count into files base.<pid>."""
    for f in glob.glob(base + ".*"):
        os.remove(f)
    return {"LD_PRELOAD": shim, "LOOM_SYNC_COUNT_FILE": base}


def read_counts(base):
    """The counts of every process that wrote base.<pid>, summed: {name: n}."""
    total = dict.fromkeys(NAMES, 0)
    for f in glob.glob(base + ".*"):
        with open(f, "rb") as fh:
            data = fh.read()
        for i, name in enumerate(NAMES):
            total[name] += int.from_bytes(data[8 * i:8 * i + 8], "little", signed=True)
    return total


def per_step(short, long_, steps_short, steps_long):
    """{name: waits per step} from the counts of two runs."""
    return {n: (long_[n] - short[n]) / (steps_long - steps_short) for n in NAMES}


def count_loom(a, work, run_loom, *run_args):
    """Runs Loom (speed_bench_data.run_loom with run_args) twice under the shim, for
    a.warmup + 1 and a.steps steps; returns the counts and the waits per step."""
    shim = build_shim(work)
    steps = {"sync-short": a.warmup + 1, "sync-long": a.steps}
    counts = {}
    for tag, n in steps.items():
        b = copy.copy(a)
        b.steps = n
        base = os.path.join(work, tag + ".count")
        r = run_loom(b, work, *run_args, tag=tag, env=shim_env(shim, base))
        if r["rc"] != 0:
            return {"error": f"{tag} failed (exit {r['rc']}), log {r['log']}"}
        counts[tag] = read_counts(base)
    lo, hi = steps["sync-short"], steps["sync-long"]
    return {"steps": [lo, hi], "counts": counts,
            "per_step": per_step(counts["sync-short"], counts["sync-long"], lo, hi)}


def report_line(res):
    if "error" in res:
        return f"host waits per step: not counted: {res['error']}"
    lo, hi = res["steps"]
    waits = ", ".join(f"{n} {v:.2f}" for n, v in res["per_step"].items())
    return (f"host waits per step at the CUDA runtime (steps {lo + 1}-{hi}, runs of {lo} and {hi} "
            f"steps differenced): {waits}")


def cudart_dir():
    import torch  # noqa: F401  (the wheel's nvidia libraries sit beside it)
    site = os.path.dirname(os.path.dirname(torch.__file__))
    for d in ("nvidia/cu13/lib", "nvidia/cuda_runtime/lib"):
        if glob.glob(os.path.join(site, d, "libcudart.so.*")):
            return os.path.join(site, d)
    sys.exit("no libcudart beside torch")


def self_test():
    with tempfile.TemporaryDirectory() as work:
        shim = build_shim(work)
        lib = cudart_dir()
        so = os.path.basename(sorted(glob.glob(os.path.join(lib, "libcudart.so.*")))[0])
        prog = os.path.join(work, "calls.c")
        with open(prog, "w") as f:
            f.write("""#include <stddef.h>
int cudaStreamSynchronize(void*); int cudaDeviceSynchronize(void);
int cudaEventSynchronize(void*); int cudaMemcpy(void*, const void*, size_t, int);
int cudaFree(void*);
int main(void) {
  cudaStreamSynchronize(NULL); cudaStreamSynchronize(NULL); cudaStreamSynchronize(NULL);
  cudaDeviceSynchronize(); cudaDeviceSynchronize();
  cudaEventSynchronize(NULL);
  cudaFree(NULL); cudaFree(NULL); cudaFree(NULL); cudaFree(NULL);
  return 0;
}
""")
        exe = os.path.join(work, "calls")
        subprocess.run(["cc", "-o", exe, prog, f"-L{lib}", f"-l:{so}", f"-Wl,-rpath,{lib}"],
                       check=True)
        base = os.path.join(work, "counts")
        env = dict(os.environ, **shim_env(shim, base))
        subprocess.run([exe], env=env, check=True)
        got = read_counts(base)
        want = dict(zip(NAMES, [3, 2, 1, 0, 4]))
        print(f"linked to {so}: counted {got}")
        if got != want:
            sys.exit(f"self-test FAILED: expected {want}")
        print("self-test passed: every wrapped call was counted once")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    else:
        sys.exit(__doc__)

#!/usr/bin/env python3
"""Runs Loom's bad-input corpus (made by make_cases.py) and checks every refusal.

    run_cases.py --work DIR --trainer build/src/trainer [--mpiexec mpiexec] [--jobs 2]
                 [--only ID_OR_GROUP_OR_GLOB ...] [--results FILE] [--python PY]

DIR is make_cases.py's --out (it holds cases.json, base/ and cases/). Each case runs in a fresh
copy of its folder, DIR/runs/<id>/ (cases/ itself is never written, so the corpus can be run
again). A case fails when
  - its exit code is not the expected one (2 for bad input, 0 for the controls);
  - the output (stdout + stderr) lacks one of its words (case-insensitive; a list entry is
    satisfied by any one of its strings);
  - the output shows a stack trace or an internal check (`check ... failed at src/...`,
    `terminate called`, `Exception raised from`, `#0 0x...` frames, sanitizer reports,
    "internal error") or matches one of the case's own `forbid` patterns or bytes;
  - a path in `absent` exists afterwards, a path in `unchanged` changed, or (refusals:
    `tree_unchanged`) anything in its folder was created, changed or removed;
  - a post-check of a control fails (`exists`, `h5_tokens_equal`).
The base world (DIR/base) must also be unchanged by the whole run.

Prints a per-case report of the failures and a summary per group; writes DIR/results.json
(or --results): for each case its exit code, seconds, pass/fail with reasons and the first
lines of its output. Exit 0 when every case passes, 1 otherwise.
"""
import argparse
import concurrent.futures
import fnmatch
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from cases_common import TEST_ENV  # noqa: E402  (the environment the cases run in)

# What a refusal (or any run) must never print: traces and internal checks.
FORBIDDEN = [
    (r"failed at (src|include)/", "internal check (LOOM_CHECK) text"),
    (r"\[check `", "internal check (LOOM_CHECK) text"),
    (r"terminate called", "uncaught exception (terminate called)"),
    (r"Exception raised from", "libtorch exception trace"),
    (r"(?m)^\s*#\d+\s+0x[0-9a-fA-F]+", "stack frames (#N 0x...)"),
    (r"(?m)^\s*frame #\d+:", "libtorch stack frames"),
    (r"Segmentation fault|core dumped|Aborted \(", "crash"),
    (r"AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:", "sanitizer report"),
    (r"(?i)internal error", "internal error"),
    (r"HDF5-DIAG", "raw HDF5 error stack"),
]
FORBIDDEN_IN_REFUSALS = [
    (r"(?m)^\s*what\(\):", "uncaught exception (what():)"),
]


def sha_tree(root):
    """{relative path: sha256 or 'dir'} of everything under root (a file or a folder)."""
    out = {}
    if os.path.isfile(root) or os.path.islink(root):
        return {"": _sha(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        out[rel] = "dir"
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            out[os.path.normpath(os.path.join(rel, f))] = _sha(p)
    return out


def _sha(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        return f"unreadable: {e}"
    return h.hexdigest()


def tree_diff(before, after):
    if set(before) == {""} and set(after) == {""}:  # one file
        return "" if before == after else "content differs"
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = []
    if new:
        parts.append("new: " + ", ".join(new[:6]) + (" ..." if len(new) > 6 else ""))
    if changed:
        parts.append("changed: " + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else ""))
    if gone:
        parts.append("removed: " + ", ".join(gone[:6]) + (" ..." if len(gone) > 6 else ""))
    return "; ".join(parts)


def message_lines(text, n=2):
    """The first n lines that look like the program's own message: its error/warning log lines
    and `trainer ...:` lines first, then lines with words of an error; not MPI banners."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    noise = re.compile(r"^(---|MPI_ABORT|with errorcode|NOTE: invoking|You may or may not|"
                       r"\[\S+:\d+\] |\S+ \S+ I \[rank)")
    lines = [l for l in lines if not noise.search(l)]
    first = [l for l in lines if re.search(r"^\S+ \S+ [EW] \[rank|^trainer( \w+)?: |^Error|"
                                           r"^error|^The following|^Run with --help", l)]
    second = [l for l in lines if re.search(r"(?i)error|refus|invalid|expected|missing|cannot|"
                                            r"unknown|no such|failed|exception|terminate", l)]
    out = []
    for l in first + second + lines:
        if l not in out:
            out.append(l)
        if len(out) == n:
            break
    return out


class Runner:
    def __init__(self, args, manifest):
        self.args = args
        self.work = os.path.abspath(args.work)
        self.base = manifest["base"]
        self.cases_dir = manifest["cases_dir"]
        self.runs = os.path.join(self.work, "runs")
        self.env = dict(os.environ)
        self.env.update(TEST_ENV)

    def subst(self, s, case_dir):
        return (s.replace("{trainer}", self.args.trainer)
                 .replace("{mpiexec}", self.args.mpiexec or "mpiexec")
                 .replace("{python}", self.args.python)
                 .replace("{case}", case_dir)
                 .replace("{base}", self.base))

    def run_case(self, c):
        cid = c["id"]
        res = {"id": cid, "group": c["group"], "expect_exit": c["expect_exit"], "argv": c["argv"],
               "note": c.get("note", "")}
        if "mpiexec" in c.get("needs", []) and not self.args.mpiexec:
            res.update(status="skipped", reasons=["needs --mpiexec"])
            return res
        src = os.path.join(self.cases_dir, cid)
        d = os.path.join(self.runs, cid)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d, symlinks=True)
        argv = [self.subst(a, d) for a in c["argv"]]
        res["argv_resolved"] = argv
        before_tree = sha_tree(d)
        before_unchanged = {p: sha_tree(os.path.join(d, p)) if os.path.exists(os.path.join(d, p))
                            else None for p in c.get("unchanged", [])}
        t0 = time.time()
        timeout = c.get("timeout", self.args.timeout)
        try:
            p = subprocess.run(argv, cwd=self.subst(c.get("cwd", "{case}"), d), env=self.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout)
            code, out_b, err_b = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            code, out_b, err_b = "timeout", e.stdout or b"", e.stderr or b""
        except OSError as e:
            code, out_b, err_b = "not-run", b"", str(e).encode()
        res["seconds"] = round(time.time() - t0, 2)
        res["exit"] = code
        raw = err_b + b"\n" + out_b
        text = raw.decode("utf-8", "replace")
        res["stderr_head"] = err_b.decode("utf-8", "replace").splitlines()[:25]
        res["stdout_head"] = out_b.decode("utf-8", "replace").splitlines()[:6]
        res["message"] = message_lines(err_b.decode("utf-8", "replace") + "\n" +
                                       out_b.decode("utf-8", "replace"))
        reasons = []
        if code != c["expect_exit"]:
            reasons.append(f"exit {code}, expected {c['expect_exit']}")
        low = text.lower()
        missing = []
        for w in c.get("words", []):
            alts = w if isinstance(w, list) else [w]
            alts = [self.subst(a, d) for a in alts]
            if not any(a.lower() in low for a in alts):
                missing.append(" | ".join(alts) if len(alts) > 1 else alts[0])
        if missing:
            reasons.append("missing words: " + "; ".join(repr(m) for m in missing))
            res["missing_words"] = missing
        forbidden = FORBIDDEN + (FORBIDDEN_IN_REFUSALS if c["expect_exit"] != 0 else [])
        for pat, what in forbidden:
            m = re.search(pat, text)
            if m:
                reasons.append(f"prints {what}: {m.group(0).strip()[:80]!r}")
        for pat in c.get("forbid", []):
            m = re.search(pat, text)
            if m:
                reasons.append(f"output matches forbidden {pat!r}: {m.group(0)[:80]!r}")
        for hexbytes in c.get("forbid_bytes", []):
            if bytes.fromhex(hexbytes) in raw:
                reasons.append(f"echoes raw bytes 0x{hexbytes} to the terminal")
        for pat in c.get("absent", []):
            hits = glob.glob(os.path.join(d, pat)) + glob.glob(os.path.join(d, os.path.dirname(pat),
                                                                              "." + os.path.basename(pat) + "*"))
            hits = [h for h in hits if os.path.exists(h)]
            if hits:
                reasons.append("left behind: " + ", ".join(sorted(os.path.relpath(h, d)
                                                                   for h in hits)[:4]))
        for path, before in before_unchanged.items():
            full = os.path.join(d, path)
            after = sha_tree(full) if os.path.exists(full) else None
            if after != before:
                detail = tree_diff(before or {}, after or {}) if before and after else (
                    "removed" if before else "created")
                reasons.append(f"changed {path}: {detail}")
        if c.get("tree_unchanged"):
            diff = tree_diff(before_tree, sha_tree(d))
            if diff:
                reasons.append("case folder changed: " + diff)
        if code == c["expect_exit"] == 0:
            for check in c.get("post", []):
                r = self.post_check(check, d)
                if r:
                    reasons.append(r)
        res["status"] = "failed" if reasons else "passed"
        res["reasons"] = reasons
        return res

    def post_check(self, check, d):
        if "exists" in check:
            p = os.path.join(d, self.subst(check["exists"], d))
            return None if os.path.exists(p) else f"post: {check['exists']} was not written"
        if "h5_tokens_equal" in check:
            a, b = (os.path.join(d, self.subst(x, d)) for x in check["h5_tokens_equal"])
            try:
                import h5py
                import numpy as np
            except ImportError:
                return "post: h5py/numpy not importable by this Python (use the venv's)"
            if not os.path.exists(a):
                return f"post: {a} was not written"
            with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
                for name in ("tokens", "loss_mask", "offsets"):
                    x, y = fa[name][...], fb[name][...]
                    if x.shape != y.shape or not np.array_equal(x, y):
                        return (f"post: {os.path.basename(a)}/{name} differs from "
                                f"{os.path.basename(b)} ({x.shape} vs {y.shape}, first "
                                f"values {x[:6].tolist()} vs {y[:6].tolist()})")
            return None
        return f"post: unknown check {check}"


def select(cases, only):
    if not only:
        return cases
    out = []
    for c in cases:
        for pat in only:
            if c["id"] == pat or c["group"] == pat or fnmatch.fnmatch(c["id"], pat) or \
                    c["id"].startswith(pat + "."):
                out.append(c)
                break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="make_cases.py's --out folder")
    ap.add_argument("--trainer", required=True)
    ap.add_argument("--mpiexec", default="", help="for the two-rank cases (skipped without)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--only", nargs="*", default=[], help="case ids, groups or globs")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120, help="seconds per case (default)")
    ap.add_argument("--results", default="", help="JSON results file (default WORK/results.json)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every case's output")
    args = ap.parse_args()
    args.trainer = os.path.abspath(args.trainer)
    if args.mpiexec and os.sep in args.mpiexec:
        args.mpiexec = os.path.abspath(args.mpiexec)
    with open(os.path.join(args.work, "cases.json")) as f:
        manifest = json.load(f)
    cases = select(manifest["cases"], args.only)
    if not cases:
        raise SystemExit(f"run_cases: no case matches {args.only}")
    runner = Runner(args, manifest)
    os.makedirs(runner.runs, exist_ok=True)
    base_before = sha_tree(runner.base)
    t0 = time.time()
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(runner.run_case, c): c for c in cases}
        for fut in concurrent.futures.as_completed(futures):
            r = fut.result()
            results.append(r)
            mark = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[r["status"]]
            print(f"[{len(results):3d}/{len(cases)}] {mark} {r['id']} "
                  f"(exit {r.get('exit', '-')}, {r.get('seconds', 0):.1f}s)", flush=True)
            if args.verbose:
                for line in r.get("stderr_head", []) + r.get("stdout_head", []):
                    print("        | " + line)
    wall = time.time() - t0
    order = {c["id"]: i for i, c in enumerate(manifest["cases"])}
    results.sort(key=lambda r: order[r["id"]])
    base_diff = tree_diff(base_before, sha_tree(runner.base))

    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        print("\n==== failures ====")
    for r in failed:
        print(f"\nFAIL {r['id']}" + (f"   [{r['note']}]" if r.get("note") else ""))
        print("  cmd:   " + " ".join(r["argv"]))
        print(f"  exit:  {r['exit']} (expected {r['expect_exit']})")
        for line in r["message"]:
            print("  says:  " + line[:300])
        for reason in r["reasons"]:
            print("  why:   " + reason)

    print("\n==== summary ====")
    groups = {}
    for r in results:
        g = groups.setdefault(r["group"], {"cases": 0, "passed": 0, "failed": 0, "skipped": 0})
        g["cases"] += 1
        g[r["status"]] += 1
    print(f"{'group':<12} {'cases':>5} {'passed':>6} {'failed':>6} {'skipped':>7}")
    for name, g in groups.items():
        print(f"{name:<12} {g['cases']:>5} {g['passed']:>6} {g['failed']:>6} {g['skipped']:>7}")
    tot = {k: sum(g[k] for g in groups.values()) for k in ("cases", "passed", "failed", "skipped")}
    print(f"{'total':<12} {tot['cases']:>5} {tot['passed']:>6} {tot['failed']:>6} "
          f"{tot['skipped']:>7}   ({wall:.0f}s, --jobs {args.jobs})")
    if base_diff:
        print(f"FAIL: the base world was modified by the cases: {base_diff}")
    if failed:
        print("failed: " + " ".join(r["id"] for r in failed))
    out = args.results or os.path.join(args.work, "results.json")
    with open(out, "w") as f:
        json.dump({"trainer": args.trainer, "seconds": round(wall, 1), "summary": groups,
                   "base_modified": base_diff, "cases": results}, f, indent=1)
    print(f"results: {out}")
    return 1 if failed or base_diff else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Configures (once) and builds Loom into build/ (or $LOOM_BUILD_DIR). Extra arguments go to
# CMake's configure step, e.g. tools/build.sh -DLOOM_WITH_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${LOOM_BUILD_DIR:-build}
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
if [[ ! -f "$build/build.ninja" || $# -gt 0 ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log"; exit 1; }
fi
jobs=${LOOM_BUILD_JOBS:-$(nproc)}
echo "[build] building in $build with $jobs jobs" >&2
cmake --build "$build" -j "$jobs"

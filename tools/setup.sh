#!/usr/bin/env bash
# Installs everything Loom needs on a fresh Debian 12 machine, idempotently and quietly:
#   1. Debian packages (compilers' libraries: Open MPI, HDF5, yaml-cpp, spdlog, ...; clang for
#      the fuzz targets),
#   2. the project virtualenv with pinned torch (libtorch) and the reference libraries
#      that the tests compare against (tools/requirements.txt).
# The virtualenv lives in a cache keyed by the requirements' hash
# (${LOOM_CACHE_DIR:-~/.cache/loom}/venv-<hash>) and `.venv` in the checkout links to it,
# so a fresh clone on the same machine reuses it. A second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*" >&2; }

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config python3-venv
  libopenmpi-dev openmpi-bin libhdf5-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libpcre2-dev libutf8proc-dev
  clang libclang-rt-dev llvm  # the fuzz targets (tools/fuzz.sh): libFuzzer, sanitizers, llvm-symbolizer
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${LOOM_BOOTSTRAP_PYTHON:-python3}
hash=$( (cat tools/requirements.txt; "$PYTHON" -c 'import sys; print(sys.version_info[:2])') |
  sha256sum | cut -c1-12)
cache=${LOOM_CACHE_DIR:-$HOME/.cache/loom}
venv="$cache/venv-$hash"
if [[ ! -f "$venv/.complete" ]]; then
  log "creating the Python environment $venv (torch and reference libraries; a few minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q --progress-bar off -r tools/requirements.txt
  "$venv/bin/python" -c "import torch, transformers, peft, tokenizers, safetensors, h5py" 
  touch "$venv/.complete"
fi
if [[ "$(readlink .venv 2>/dev/null || true)" != "$venv" ]]; then
  rm -rf .venv
  ln -s "$venv" .venv
fi
log "ready: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')," \
  "$(mpirun --version 2>/dev/null | head -1)"

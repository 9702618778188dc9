#!/usr/bin/env bash
# Rehearses tools/device_check.sh here, before a GPU session spends its minutes: runs it in a
# mount namespace where this machine's copies of everything the bundle carries (Open MPI with
# its plugins, daemon and help files, PMIx, HDF5, yaml-cpp, spdlog, fmt, utf8proc and what they
# need) are hidden behind empty files and folders, so Loom's processes can only find the
# bundle's. Libraries the machine's own Python needs (libz, libffi, libssl, libcrypto, libzstd)
# and mount's libpcre2 stay visible: the GPU machine has its own. Needs root (unshare -m).
#
#   tools/device_rehearse.sh [--build-dir DIR] [--python PY] [STAGE...]   (default stages: tests cpu)
#
# DIR is tools/device_bundle.sh's build folder (default build-device), PY a Python with the
# device's torch (default .venv-device/bin/python); output goes to /tmp/loom-rehearse-out.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-device
python=$PWD/.venv-device/bin/python
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "device_rehearse.sh: unknown option '$1'" >&2; exit 2 ;;
    *) break ;;
  esac
done
stage=$build/device-stage
[[ -d "$stage/usr" && -f .device/loom-device.tar.xz ]] ||
  { echo "no bundle in $stage: run tools/device_bundle.sh first" >&2; exit 2; }
[[ $# -gt 0 ]] || set -- tests cpu
# What the GPU machine's python3 has beside torch (KINDS.md of the device tool) and the
# benchmark and the reference tests import; the bundle's wheels bring transformers, peft and
# tokenizers.
if ! "$python" -c "import h5py, accelerate, huggingface_hub, packaging, yaml, regex, typer, tqdm, psutil, safetensors" 2>/dev/null; then
  echo "[rehearse] installing the device image's packages into $(dirname "$(dirname "$python")")" >&2
  "$python" -m pip install -q h5py==3.16.0 accelerate==1.15.0 huggingface_hub==1.33.0 packaging \
    pyyaml regex typer tqdm psutil safetensors==0.8.0
fi

if [[ "${LOOM_REHEARSE_INSIDE:-}" != 1 ]]; then
  export LOOM_REHEARSE_INSIDE=1
  exec unshare -m --propagation private "$0" --build-dir "$build" --python "$python" -- "$@"
fi

multiarch=/usr/lib/x86_64-linux-gnu
empty=$(mktemp -d)
for f in "$stage$multiarch"/*.so*; do
  n=$(basename "$f")
  [[ "$n" =~ ^lib(z|ffi|ssl|crypto|zstd|pcre2-8)\.so ]] && continue
  for d in "$multiarch" /lib/x86_64-linux-gnu; do
    if [[ -e "$d/$n" ]]; then mount --bind /dev/null "$(readlink -f "$d/$n")"; fi
  done
done
for d in "$multiarch/openmpi" "$multiarch/pmix2" /usr/share/openmpi /etc/openmpi; do
  if [[ -d "$d" ]]; then mount --bind "$empty" "$d"; fi
done
for b in /usr/bin/orted /usr/bin/orterun "$(readlink -f /usr/bin/mpirun)" "$(readlink -f /usr/bin/cc)"; do
  if [[ -f "$b" ]]; then mount --bind /dev/null "$b"; fi
done
echo "[rehearse] this machine's copies of the bundled libraries are hidden" >&2
rm -rf /tmp/loom-rehearse-out
OUT=/tmp/loom-rehearse-out LOOM_DEVICE_PYTHON=$python bash tools/device_check.sh "$@"

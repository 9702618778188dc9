#!/usr/bin/env bash
# Builds, here, what a GPU machine that has torch but none of Loom's other libraries needs to
# run Loom's `gpu` tests and benchmarks, and packs it into .device/ (git-ignored) for the device
# tool's `carry`. tools/device_check.sh unpacks and runs it there. Nothing is compiled there.
#
#   tools/device_bundle.sh [--torch VERSION] [--python PY] [--build-dir DIR]
#
# - The binaries are built against the torch that the device's python3 holds (KINDS.md of the
#   device tool: 2.11.0+cu130), not Loom's pin: libtorch has no stable ABI across versions.
#   --python names a Python with that torch; without it .venv-device/ is made with pip.
# - Their other shared libraries (Open MPI with its plugins and helper programs, PMIx, HDF5,
#   yaml-cpp, spdlog, fmt, PCRE2, utf8proc and what those need) are copied from this machine,
#   keeping their /usr layout so Open MPI and PMIx relocate with OPAL_PREFIX and
#   PMIX_INSTALL_PREFIX. glibc, libstdc++ and libgcc_s are the device's (the device's are newer;
#   device_check.sh says so if a binary does not start). torch, the CUDA runtime and NCCL are
#   the device's torch wheel's, as Loom's build links them.
# - The reference Python packages at Loom's pins (transformers, peft, tokenizers) go to .whl/
#   as wheels; the device's python3 has torch, h5py, numpy, accelerate, safetensors.
# Output: .device/loom-device.tar.xz (about 20 MB) and .whl/*.whl; the size of each is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_version=2.11.0
python=""
build=build-device
while [[ $# -gt 0 ]]; do
  case "$1" in
    --torch) torch_version=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    *) echo "device_bundle.sh: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done

if [[ -z "$python" ]]; then
  python=$PWD/.venv-device/bin/python
  if ! "$python" -c "import torch; assert torch.__version__.startswith('$torch_version')" 2>/dev/null; then
    echo "[bundle] making .venv-device with torch $torch_version (the device's)" >&2
    python3 -m venv .venv-device
    .venv-device/bin/pip install -q "torch==$torch_version" numpy
  fi
fi
have=$("$python" -c "import torch; print(torch.__version__)")
[[ "$have" == "$torch_version"* ]] || { echo "$python has torch $have, not $torch_version" >&2; exit 2; }

# --- Build: the trainer and every test labelled gpu, against that torch.
mapfile -t gpu_tests < <(grep -ho 'loom_add_test([a-z0-9_]*_gpu_test' tests/*/CMakeLists.txt | sed 's/.*(//')
targets=(trainer "${gpu_tests[@]}")
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_PYTHON="$python" \
    -DLOOM_TEST_FUZZ=OFF -DLOOM_TEST_CLUSTER=OFF >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log"; exit 1; }
fi
echo "[bundle] building ${targets[*]} in $build" >&2
cmake --build "$build" -j "${LOOM_BUILD_JOBS:-$(nproc)}" --target "${targets[@]}"

# --- Stage (in the build folder): bin/ (stripped binaries), usr/ (the libraries, in their
# /usr layout).
stage=$build/device-stage
rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/usr/bin" "$stage/usr/lib/x86_64-linux-gnu"
exes=("$build/src/trainer")
for t in "${targets[@]:1}"; do exes+=("$(find "$build/tests" -name "$t" -type f -executable)"); done
for e in "${exes[@]}"; do strip -o "$stage/bin/$(basename "$e")" "$e"; done

multiarch=/usr/lib/x86_64-linux-gnu
ompi_plugins=$multiarch/openmpi/lib/openmpi3
# The plugins Debian's /etc/openmpi/openmpi-mca-params.conf turns off (fabrics this machine
# has none of); device_env.sh turns them off the same way, so they need not travel.
skip='mca_(btl_(openib|ofi|uct)|mtl_(ofi|psm|psm2)|pml_ucx|osc_ucx|spml_ucx|atomic_ucx|sshmem_ucx)\.so$'
mkdir -p "$stage$ompi_plugins"
for p in "$ompi_plugins"/*.so; do
  [[ "$(basename "$p")" =~ $skip ]] || cp -L "$p" "$stage$p"
done
cp -a "$multiarch/openmpi/lib/"*.so "$stage$multiarch/openmpi/lib/" 2>/dev/null || true
cp -a "$multiarch/pmix2" "$stage$multiarch/"
mkdir -p "$stage/usr/share"
cp -a /usr/share/openmpi "$stage/usr/share/"
cp -L /usr/bin/orted "$stage/usr/bin/orted"
cp -L /usr/bin/orterun "$stage/usr/bin/mpirun"

# Every shared library those need that is neither glibc's, the compiler runtime's, nor
# torch's/CUDA's (the device has its own), by the name the loader asks for.
system_re='/(ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libgcc_s|libstdc\+\+)\.so'
torch_re='/(torch/lib|nvidia)/'
mapfile -t elves < <(find "$stage" -type f \( -name '*.so*' -o -perm -u+x \) -exec sh -c \
  'head -c4 "$1" | grep -q ELF && echo "$1"' _ {} \;)
torch_lib="$("$python" -c 'import torch,os; print(os.path.dirname(torch.__file__))')/lib"
declare -A copied=()
queue=("${elves[@]}")
while [[ ${#queue[@]} -gt 0 ]]; do
  f=${queue[0]}; queue=("${queue[@]:1}")
  while read -r name path; do
    [[ -n "$path" && "$path" != "not" ]] || { echo "[bundle] $f: $name not found here" >&2; exit 1; }
    [[ "$path" =~ $system_re || "$path" =~ $torch_re || -n "${copied[$name]:-}" ]] && continue
    [[ -e "$stage$multiarch/$name" || -e "$stage$multiarch/pmix2/lib/$name" ]] && continue
    cp -L "$path" "$stage$multiarch/$name"
    copied[$name]=1
    queue+=("$stage$multiarch/$name")
  done < <(LD_LIBRARY_PATH="$torch_lib" ldd "$f" 2>/dev/null | awk '/=>/ {print $1, $3}')
done
# The sync count's shim (benchmarks/sync_count.py), for a machine without a C compiler.
mkdir -p "$stage/shim"
cc -O2 -shared -fPIC -o "$stage/shim/libcuda_sync_count.so" benchmarks/cuda_sync_count.c -ldl
"$python" -c "import torch; print(torch.__version__)" >"$stage/TORCH_VERSION"
git describe --always --dirty --abbrev=12 >"$stage/COMMIT"

mkdir -p .device
tar -C "$stage" -cJf .device/loom-device.tar.xz .
echo "[bundle] .device/loom-device.tar.xz: $(du -h .device/loom-device.tar.xz | cut -f1)" \
  "(${#copied[@]} libraries, torch $(cat "$stage/TORCH_VERSION"), commit $(cut -c1-7 "$stage/COMMIT"))" >&2

# --- The reference packages at Loom's pins, as wheels for the device's Python 3.12.
mkdir -p .whl
for pkg in transformers peft tokenizers; do
  pin=$(grep -E "^$pkg==" tools/requirements.txt)
  ls .whl/"${pkg}"-"${pin#*==}"-*.whl >/dev/null 2>&1 && continue
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pin"
done
echo "[bundle] .whl: $(du -ch .whl/*.whl | tail -1 | cut -f1) ($(ls .whl | tr '\n' ' '))" >&2
# What the device tool sends: tracked and untracked-not-ignored files, and the carried folders
# (64 MiB at most).
tree=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .device/loom-device.tar.xz .whl | tail -1 | cut -f1)
mib=$(( (tree + carried) / 1048576 ))
echo "[bundle] the device call sends about $mib MiB (the limit is 64)" >&2
[[ $mib -lt 64 ]] || { echo "[bundle] too much would travel: ignore what the device needs not" >&2; exit 1; }
echo "[bundle] carry: [\".device\", \".whl\"]; command: bash tools/device_check.sh [STAGES]" >&2

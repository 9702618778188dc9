#!/usr/bin/env bash
# Launches the trainer over several machines without a scheduler, with Open MPI's mpirun:
#   launch/multinode.sh HOSTFILE CONFIG [trainer arguments...]
# e.g. launch/multinode.sh launch/hosts.example cluster/example_mixed_cluster.yaml
# HOSTFILE lists each machine with `slots=` = its GPUs (launch/hosts.example): one rank per slot,
# ranks numbered host by host. The Loom checkout, the model, the data and run.output_dir must be
# at the same paths on every machine (a shared filesystem), and mpirun must reach each host by
# ssh without a password. Per-host GPUs and weights go in the config's cluster.ranks.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 HOSTFILE CONFIG [trainer arguments...]" >&2
  exit 2
fi
hostfile=$1 config=$2
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
trainer=${LOOM_TRAINER:-$root/${LOOM_BUILD_DIR:-build}/src/trainer}
# Sum of the slots: one rank each.
n=$(awk '!/^[[:space:]]*(#|$)/ { s = 1; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { split($i, a, "="); s = a[2] } n += s } END { print n + 0 }' "$hostfile")
if ((n == 0)); then
  echo "$0: $hostfile lists no hosts" >&2
  exit 2
fi
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export HDF5_USE_FILE_LOCKING=FALSE
echo "launch/multinode.sh: $n rank(s) over $(grep -cv '^[[:space:]]*\(#\|$\)' "$hostfile") host(s) of $hostfile" >&2
exec mpirun --hostfile "$hostfile" -np "$n" --map-by slot --bind-to none \
  -x HDF5_USE_FILE_LOCKING ${OMP_NUM_THREADS:+-x OMP_NUM_THREADS} -x PATH -x LD_LIBRARY_PATH \
  "$trainer" --config "$config" "$@"

#!/usr/bin/env bash
# Launches N ranks of the trainer on this machine:
#   launch/local.sh N CONFIG [trainer arguments...]
# e.g. launch/local.sh 2 configs/quickstart.yaml --set train.max_steps=5
# One rank per GPU (or per CPU rank); per-rank devices and weights come from cluster.ranks.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 N CONFIG [trainer arguments...]" >&2
  exit 2
fi
n=$1 config=$2
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
trainer=${LOOM_TRAINER:-$root/${LOOM_BUILD_DIR:-build}/src/trainer}
if [[ $(id -u) -eq 0 ]]; then
  # Open MPI refuses root unless told; containers and CI run as root.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# More ranks than cores is fine for CPU ranks on a small machine.
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
exec mpirun -np "$n" --bind-to none "$trainer" --config "$config" "$@"

#!/usr/bin/env bash
# Launches N ranks of the trainer on this machine:
#   launch/local.sh N CONFIG [trainer arguments...]
# e.g. launch/local.sh 2 configs/quickstart.yaml --set train.max_steps=5
# One rank per GPU (or per CPU rank); per-rank devices and weights come from cluster.ranks.
#
# Stopping: SIGTERM, SIGINT (Ctrl-C) or SIGHUP to this script is passed to mpirun as
# SIGUSR1, which Open MPI forwards to every rank and then waits for them: the ranks finish
# the current step, write a checkpoint however long it takes, and exit 0, and so does this
# script. A second signal aborts at once (mpirun's own SIGTERM: the ranks are killed, the
# newest complete checkpoint stays). Sent to mpirun itself, SIGTERM would give the ranks
# only odls_base_sigkill_timeout (1 s) before SIGKILL, and mpirun would exit 1.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 N CONFIG [trainer arguments...]" >&2
  exit 2
fi
n=$1 config=$2
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
trainer=${LOOM_TRAINER:-$root/${LOOM_BUILD_DIR:-build}/src/trainer}
mpirun=${LOOM_MPIEXEC:-mpirun}
if [[ $(id -u) -eq 0 ]]; then
  # Open MPI refuses root unless told; containers and CI run as root.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# More ranks than cores is fine for CPU ranks on a small machine.
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}

# mpirun in its own session, so that Ctrl-C reaches only this script (the terminal would
# otherwise send SIGINT to mpirun too, and mpirun's answer to SIGINT is to kill the ranks).
setsid "$mpirun" -np "$n" --bind-to none "$trainer" --config "$config" "$@" &
pid=$!
stopping=0
stop() {
  if ((stopping)); then
    echo "[local.sh] second stop signal: aborting the ranks (the newest complete checkpoint stays)" >&2
    kill -TERM "$pid" 2>/dev/null || true
  else
    stopping=1
    echo "[local.sh] stop signal: the ranks checkpoint after the current step and exit (signal again to abort)" >&2
    kill -USR1 "$pid" 2>/dev/null || true
  fi
}
trap stop TERM INT HUP
# `wait` returns early when a trapped signal arrives: wait again until mpirun has exited.
set +e
while :; do
  wait "$pid"
  rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$rc"

#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the `slurm` tests and for trying
# cluster/slurm/train.sbatch by hand. Idempotent; works as root in a container (no systemd).
#
#   tools/slurm_local.sh start    install Debian's slurmctld/slurmd/slurm-client/munge if missing,
#                                 write slurm.conf for this host, start munged, slurmctld, slurmd,
#                                 and wait until the node is idle (already running: nothing to do)
#   tools/slurm_local.sh stop     stop the three daemons by their pids
#   tools/slurm_local.sh status   exit 0 when the node answers, and print sinfo
#   tools/slurm_local.sh env      print `export SLURM_CONF=...` for the clients (eval "$(... env)")
#
# Everything lives in ${LOOM_SLURM_DIR:-/tmp/loom-slurm}: slurm.conf, its own munge key and
# socket (a system munged or Slurm is left alone), state, spool, pid files and the daemons'
# logs (slurmctld.log, slurmd.log, munged.log). Clients find the cluster through SLURM_CONF.
# Exit codes: 0 ok, 1 failure, 77 Slurm cannot run here (not root and no sudo; the reason is
# printed), which the tests report as a skip.
set -euo pipefail

dir=${LOOM_SLURM_DIR:-/tmp/loom-slurm}
conf="$dir/slurm.conf"
ctld_port=${LOOM_SLURM_CTLD_PORT:-6817}
slurmd_port=${LOOM_SLURM_SLURMD_PORT:-6818}
export SLURM_CONF="$conf"

log() { echo "[slurm_local] $*" >&2; }
die() { log "error: $*"; exit 1; }
cannot() { log "cannot run Slurm here: $*"; exit 77; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local missing=() p
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    sudo -n true 2>/dev/null || cannot "Debian packages ${missing[*]} are missing and this user is not root (no sudo)"
    sudo="sudo -n"
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's maintainer scripts try to start the services; a container without systemd says
  # no, which is fine: this script starts them itself.
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  local host cpus sockets cores threads mem
  host=$(hostname -s)
  # What slurmd itself detects, so the node is not drained for claiming more than it has.
  read -r cpus sockets cores threads mem < <(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '
    $1=="CPUs"{c=$2} $1=="SocketsPerBoard"{s=$2} $1=="CoresPerSocket"{k=$2}
    $1=="ThreadsPerCore"{t=$2} $1=="RealMemory"{m=$2} END{print c, s, k, t, m}')
  [[ -n "$cpus" && -n "$mem" ]] || die "slurmd -C did not report this host's CPUs and memory"
  mem=$((mem * 9 / 10))  # leave the kernel and page cache room; slurmd drains a node that claims too much
  mkdir -p "$dir/state" "$dir/spool"
  cat >"$conf.tmp" <<EOF
# Written by tools/slurm_local.sh: a one-node Slurm for tests (rewritten on every start).
ClusterName=loom-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MessageTimeout=30
KillWait=10
InactiveLimit=0
# sbatch --wait polls a job every 2 s, growing by x4 while under MinJobAge/2 (at most 32 s): 16
# keeps it at 8 s, and a finished job's record still outlives one poll.
MinJobAge=16

NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  mv "$conf.tmp" "$conf"
}

start_munge() {
  pid_alive "$dir/munged.pid" && return 0
  if [[ ! -f "$dir/munge.key" ]]; then
    (umask 077 && dd if=/dev/urandom of="$dir/munge.key.tmp" bs=1024 count=1 status=none)
    mv "$dir/munge.key.tmp" "$dir/munge.key"
  fi
  # --force: /tmp is world-writable and root owns everything here; munged would refuse both.
  munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -1; }

wait_idle() {
  local state="" i
  for ((i = 0; i < 120; i++)); do
    state=$(node_state)
    case "$state" in
      idle | mixed | allocated) return 0 ;;
      drain* | down*)
        scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  log "the node is '${state:-not answering}' after 60 s; logs: $dir/slurmctld.log $dir/slurmd.log"
  sinfo -R 2>&1 | sed 's/^/[slurm_local]   /' >&2 || true
  exit 1
}

start() {
  if pid_alive "$dir/slurmctld.pid" && pid_alive "$dir/slurmd.pid" && pid_alive "$dir/munged.pid"; then
    wait_idle
    log "already running (SLURM_CONF=$conf)"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    cannot "the daemons must run as root (this is uid $(id -u)); run as root, e.g. in a container"
  fi
  install_packages
  mkdir -p "$dir"
  stop_daemons quiet
  write_config
  start_munge
  # -i: ignore state left by an earlier run (its jobs are gone).
  slurmctld -i -f "$conf"
  slurmd -f "$conf" -N "$(hostname -s)"
  wait_idle
  log "running: $(sinfo -h -o '%P %a %D %T %c CPUs %m MB' | head -1) (SLURM_CONF=$conf)"
}

stop_one() {
  local name=$1 pidfile=$2 pid i
  [[ -f "$pidfile" ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) did not stop in 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

stop_daemons() {
  # slurmd first: it ends its job steps; slurmctld and munged after it.
  stop_one slurmd "$dir/slurmd.pid"
  stop_one slurmctld "$dir/slurmctld.pid"
  stop_one munged "$dir/munged.pid"
  [[ "${1:-}" == quiet ]] || log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop_daemons ;;
  status)
    pid_alive "$dir/slurmctld.pid" || { log "not running"; exit 1; }
    sinfo
    ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac

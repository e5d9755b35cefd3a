#!/usr/bin/env bash
# Stop the local SLURM cluster started by start.sh: slurmd -> slurmctld -> slurmdbd -> MariaDB -> munged, each by its
# pid file (never by process name, so other daemons on the machine are untouched). Idempotent; jobs still queued stay
# in the controller's state and run again after the next start. `--purge` also deletes the cluster's state directory.
set -euo pipefail

STATE=${QFT_SLURM_DIR:-/var/lib/quantum_ft-slurm}
RUN=$STATE/run

log() { printf '[local-slurm] %s\n' "$*"; }

stop() {  # stop NAME PIDFILE
  local name=$1 pidfile=$2 pid
  if [[ ! -s $pidfile ]] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name not running"
    return
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { log "$name stopped"; return; }
    sleep 0.5
  done
  log "$name did not stop within 30 s; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

stop slurmd "$RUN/slurmd.pid"
stop slurmctld "$RUN/slurmctld.pid"
stop slurmdbd "$RUN/slurmdbd.pid"
stop MariaDB "$STATE/mariadb/mariadb.pid"
stop munged /run/munge/munged.pid

if [[ ${1:-} == --purge ]]; then
  rm -rf "$STATE"
  log "removed $STATE"
fi

#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this Debian machine: munged -> MariaDB -> slurmdbd -> slurmctld -> slurmd.
# Run as root. Idempotent: daemons already running (by their pid files) are left alone, packages already installed
# are not reinstalled. Everything the cluster writes lives under $QFT_SLURM_DIR (default /var/lib/quantum_ft-slurm).
# Stop it with launchers/local_slurm/stop.sh. Accounting (slurmdbd on a private MariaDB at 127.0.0.1:3307) is part
# of it because submitit reads job states with sacct.
set -euo pipefail

STATE=${QFT_SLURM_DIR:-/var/lib/quantum_ft-slurm}
DB_PORT=${QFT_SLURM_DB_PORT:-3307}
PARTITION=${QFT_SLURM_PARTITION:-debug}
CONF_DIR=/etc/slurm
NODE=$(hostname -s)
RUN=$STATE/run
DB=$STATE/mariadb  # owned by the mysql user: data, socket, pid file and log

log() { printf '[local-slurm] %s\n' "$*"; }
die() { printf '[local-slurm] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (the daemons run as root/munge/mysql); e.g. sudo $0"

running() {  # running PIDFILE: the pid in it names a live process
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within the time allowed; see the logs in $STATE/log"
    sleep 0.5
  done
}

install_packages() {
  local missing=()
  for bin in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  ((${#missing[@]} == 0)) && return
  log "installing SLURM, munge and MariaDB (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends \
      slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null; }
}

write_configs() {
  mkdir -p "$STATE"/{log,ctld,spool} "$DB/data" "$RUN" "$CONF_DIR"
  local hw cpus mem
  hw=$(slurmd -C | head -1)
  cpus=$(sed -E 's/.* CPUs=([0-9]+).*/\1/' <<<"$hw")
  mem=$(sed -E 's/.* RealMemory=([0-9]+).*/\1/' <<<"$hw")
  if [[ -f $CONF_DIR/slurm.conf ]] && ! grep -q '^# written by quantum_ft' "$CONF_DIR/slurm.conf"; then
    die "$CONF_DIR/slurm.conf exists and was not written by this script; move it away to use the local cluster"
  fi
  cat >"$CONF_DIR/slurm.conf" <<EOF
# written by quantum_ft launchers/local_slurm/start.sh: a one-node cluster for tests and local trials
ClusterName=qft
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
# short credential lifetime: a requeued job may start again after ~10 s instead of 120 s
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
SchedulerParameters=bf_interval=2,sched_interval=2
KillWait=5
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$CONF_DIR/slurmdbd.conf" <<EOF
# written by quantum_ft launchers/local_slurm/start.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$CONF_DIR/slurmdbd.conf"
}

start_munge() {
  if running /run/munge/munged.pid; then log "munged already running"; return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null; chown munge:munge /etc/munge/munge.key; }
  runuser -u munge -- munged
  wait_for 10 munged test -S /run/munge/munge.socket.2
  log "munged started"
}

start_mariadb() {
  local sock=$DB/mysql.sock
  if running "$DB/mariadb.pid"; then log "MariaDB already running"; return; fi
  chown -R mysql:mysql "$DB"
  if [[ ! -d $DB/data/mysql ]]; then
    mariadb-install-db --user=mysql --datadir="$DB/data" --auth-root-authentication-method=socket \
      >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $STATE/log/mariadb-install.log"
  fi
  setsid mariadbd --user=mysql --datadir="$DB/data" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --socket="$sock" --pid-file="$DB/mariadb.pid" --log-error="$DB/mariadb.log" \
    --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
  wait_for 60 "MariaDB (log: $DB/mariadb.log)" mariadb --socket="$sock" -e 'SELECT 1'
  mariadb --socket="$sock" <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
  log "MariaDB started on 127.0.0.1:$DB_PORT"
}

start_slurm() {
  if running "$RUN/slurmdbd.pid"; then log "slurmdbd already running"; else
    slurmdbd
    wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/6819"
    log "slurmdbd started"
  fi
  if running "$RUN/slurmctld.pid"; then log "slurmctld already running"; else
    slurmctld
    wait_for 30 slurmctld scontrol ping
    log "slurmctld started"
  fi
  if running "$RUN/slurmd.pid"; then log "slurmd already running"; else
    slurmd
    log "slurmd started"
  fi
  wait_for 60 "node $NODE" bash -c "sinfo -h -n $NODE -o %t | grep -Eq '^(idle|mix|alloc)'"
  wait_for 30 accounting sacct -n -X -S now
}

install_packages
write_configs
start_munge
start_mariadb
start_slurm
log "ready: $(sinfo -h -o '%P %D nodes, %c CPUs, %m MB, %t')"

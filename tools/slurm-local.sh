#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm_cluster.py and for trying a
# SLURM study before a real cluster: Debian's slurm-wlm (22.05) and munge, slurmctld and
# slurmd on localhost, no accounting, no cgroups. Run as root.
#
#   tools/slurm-local.sh [start]   start what is not up (idempotent); last line printed:
#                                  export SLURM_CONF=...   (eval it, or export it yourself)
#   tools/slurm-local.sh stop      stop slurmd and slurmctld (munged is left running)
#   tools/slurm-local.sh env       print the export line only
#
# Config and logs: $ABLATE_SLURM_DIR (default /tmp/ablate-slurm); state and spool:
# /var/spool/ablate-slurm. Install first: apt-get install -y slurm-wlm munge.
set -euo pipefail

DIR=${ABLATE_SLURM_DIR:-/tmp/ablate-slurm}
SPOOL=/var/spool/ablate-slurm
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

die() { echo "slurm-local: $*" >&2; exit 1; }

# Poll (every 0.2 s, up to $1 seconds) until the command after it succeeds.
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

start_munge() {
  [ -s /etc/munge/munge.key ] || mungekey -c
  chown munge:munge /etc/munge/munge.key
  chmod 0600 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 30 sh -c 'munge -n | unmunge' || die "munged did not start (see /var/log/munge)"
  fi
}

write_conf() {
  local host cpus
  host=$(hostname)
  cpus=$(nproc)
  mkdir -p "$DIR" "$SPOOL/ctld" "$SPOOL/d"
  # cred_expire: how long a requeued job waits before it may start again (SLURM's default,
  # 120 s, would make every requeue test wait two minutes). sched_interval: the main
  # scheduling pass, which starts a requeued job once that wait is over (default 60 s).
  cat >"$CONF.new" <<EOF
ClusterName=ablate-local
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  if ! cmp -s "$CONF.new" "$CONF"; then
    mv "$CONF.new" "$CONF"
    return 0
  fi
  rm -f "$CONF.new"
  return 1
}

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  local pidfile pid
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    running "$pidfile" || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    wait_for 30 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  done
}

start() {
  [ "$(id -u)" = 0 ] || die "run as root (slurmd runs jobs as their users)"
  command -v slurmctld >/dev/null || die "no slurmctld: apt-get install -y slurm-wlm munge"
  start_munge
  if write_conf; then stop; fi  # a changed config: restart both daemons with it
  running "$DIR/slurmctld.pid" || slurmctld
  wait_for 60 scontrol ping || die "slurmctld did not answer (see $DIR/slurmctld.log)"
  running "$DIR/slurmd.pid" || slurmd
  local host
  host=$(hostname)
  # A node that was down when the daemons last stopped comes back as DOWN: resume it.
  wait_for 60 sh -c "sinfo -h -n $host -o %T | grep -qvE '^(unknown|not_responding)'" ||
    die "slurmd did not register (see $DIR/slurmd.log)"
  if sinfo -h -n "$host" -o %T | grep -qE 'down|drain'; then
    scontrol update NodeName="$host" State=RESUME
  fi
  wait_for 60 sh -c "sinfo -h -n $host -o %T | grep -qE '^(idle|mixed|allocated)'" ||
    die "node $host is not up: $(sinfo -h -n "$host" -o '%T %E')"
}

case "${1:-start}" in
  start) start; echo "export SLURM_CONF=$CONF" ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) die "usage: $0 [start|stop|env]" ;;
esac

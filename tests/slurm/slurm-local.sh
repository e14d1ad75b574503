#!/usr/bin/env bash
# Single-node SLURM for CI: Debian 12 packages (slurm-wlm 22.05.8, munge 0.5.15),
# no systemd, run as root. Start ~1 s (after install), stop ~2 s.
# The project's own copy: tests/test_slurm.py starts it in a module fixture (start, env, stop).
#
#   slurm-local.sh install   # apt-get install slurmctld slurmd slurm-client munge (skipped if present)
#   slurm-local.sh start     # install + munged + slurmctld + slurmd, wait until the node is idle (idempotent)
#   slurm-local.sh stop      # cancel all jobs, stop the daemons this script started, by PID (idempotent)
#   slurm-local.sh restart | status
#   eval "$(slurm-local.sh env)"   # SLURM_CONF + PATH (PATH adds a squeue-based `sacct` stand-in)
#
# State, logs, spool, pid files: $SLURM_LOCAL_DIR (default /tmp/jepa-slurm).
# munged uses its package defaults (/etc/munge/munge.key, /run/munge, /var/log/munge, /var/lib/munge).
# Process tracking: proctrack/cgroup (cgroup v1) when /sys/fs/cgroup/freezer is usable,
# else proctrack/linuxproc; force with SLURM_LOCAL_PROCTRACK=cgroup|linuxproc.
set -euo pipefail

BASE=${SLURM_LOCAL_DIR:-/tmp/jepa-slurm}
CONF=$BASE/etc/slurm.conf
RUN=$BASE/run
LOG=$BASE/log
NODE=$(hostname -s)
export SLURM_CONF=$CONF

log() { echo "[slurm-local] $*" >&2; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

do_install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
     && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  log "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

pick_proctrack() {
  case "${SLURM_LOCAL_PROCTRACK:-auto}" in
    cgroup|linuxproc) echo "$SLURM_LOCAL_PROCTRACK"; return ;;
  esac
  if [ -d /sys/fs/cgroup/freezer ] && mkdir /sys/fs/cgroup/freezer/slurmci_probe.$$ 2>/dev/null; then
    rmdir /sys/fs/cgroup/freezer/slurmci_probe.$$; echo cgroup
  else
    echo linuxproc
  fi
}

write_conf() {
  mkdir -p "$BASE/etc" "$BASE/state" "$BASE/spool/slurmd-$NODE" "$RUN" "$LOG" "$BASE/bin"
  local cpus proctrack
  cpus=$(nproc)
  proctrack=$(pick_proctrack)
  log "proctrack/$proctrack"
  if [ "$proctrack" = cgroup ]; then
    cat > "$BASE/etc/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
  else
    rm -f "$BASE/etc/cgroup.conf"
  fi
  cat > "$CONF.new" <<EOF
ClusterName=ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire (min 5) is also how long a requeued job waits before it may start again (default 120 s);
# sched_interval=2: the main scheduler then picks the requeued job up within ~2 s (default 60 s)
AuthInfo=cred_expire=5
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ProctrackType=proctrack/$proctrack
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=5
MailProg=/bin/true
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.new" "$CONF"
  # sacct needs slurmdbd; this stand-in answers submitit's
  # `sacct -o JobID,State,NodeList --parsable2 -j ID...` from squeue (jobs stay for MinJobAge=300 s)
  cat > "$BASE/bin/sacct" <<'EOF'
#!/usr/bin/env bash
ids=()
while [ $# -gt 0 ]; do
  case "$1" in
    -j|--jobs) ids+=("${2//,/ }"); shift 2 ;;
    -j*) ids+=("${1#-j}"); shift ;;
    --jobs=*) ids+=("${1#--jobs=}"); shift ;;
    *) shift ;;
  esac
done
echo "JobID|State|NodeList"
squeue -h -r -t all -o '%i|%T|%N' | awk -F'|' -v want="${ids[*]}" '
  BEGIN { n = split(want, w, " ") }
  { if (n == 0) { print; next }
    split($1, p, "_")
    for (i = 1; i <= n; i++) if ($1 == w[i] || p[1] == w[i]) { print; next } }'
EOF
  chmod +x "$BASE/bin/sacct"
}

start_munge() {
  if munge_ok; then return 0; fi
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
  chmod 0700 /etc/munge /var/log/munge; chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge; chmod 0711 /var/lib/munge
  runuser -u munge -- /usr/sbin/munged        # forks; pid in /run/munge/munged.pid
  for _ in $(seq 100); do
    if munge_ok; then cp /run/munge/munged.pid "$RUN/munged.pid"; return 0; fi  # copy = "ours"
    sleep 0.05
  done
  log "munged did not come up"; tail -5 /var/log/munge/munged.log >&2; return 1
}

do_start() {
  do_install
  mkdir -p "$RUN" "$LOG"
  if alive "$RUN/slurmctld.pid" && alive "$RUN/slurmd-$NODE.pid" && munge_ok; then
    log "already running"; return 0
  fi
  write_conf
  start_munge
  # -c: cold start (drop saved jobs); both daemonize and write their pid files
  alive "$RUN/slurmctld.pid" || slurmctld -c -f "$CONF"
  alive "$RUN/slurmd-$NODE.pid" || slurmd -N "$NODE" -f "$CONF"
  local st=
  for _ in $(seq 300); do
    st=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$st" in idle|mixed|allocated|completing) log "node $NODE $st"; return 0;; esac
    sleep 0.1
  done
  log "node did not become idle (state='$st')"
  tail -20 "$LOG/slurmctld.log" "$LOG/slurmd-$NODE.log" >&2
  return 1
}

stop_pids() {  # stop_pids PIDFILE... : TERM all at once, wait up to 10 s, then KILL
  local f pids=()
  for f in "$@"; do alive "$f" && pids+=("$(cat "$f")"); done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
      local left=0 p
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
      [ $left = 0 ] && break; sleep 0.1
    done
    for p in "${pids[@]}"; do
      kill -0 "$p" 2>/dev/null && { log "pid $p ignored TERM, killing"; kill -KILL "$p" || true; }
    done
  fi
  rm -f "$@"
}

do_stop() {
  if alive "$RUN/slurmctld.pid"; then
    local ids
    ids=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      scancel $ids || true
      for _ in $(seq 150); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
    fi
  fi
  # slurmctld also ends its child slurmscriptd; munged only if this script started it
  stop_pids "$RUN/slurmd-$NODE.pid" "$RUN/slurmctld.pid" "$RUN/munged.pid"
  log "stopped"
}

do_status() {
  local f
  for f in "$RUN"/*.pid; do [ -e "$f" ] || continue
    if alive "$f"; then echo "$(basename "$f" .pid): running pid $(cat "$f")"
    else echo "$(basename "$f" .pid): dead"; fi
  done
  if munge_ok; then echo "munge: ok"; else echo "munge: not working"; fi
  sinfo 2>&1 || true
}

case "${1:-}" in
  install) do_install ;;
  start)   do_start ;;
  stop)    do_stop ;;
  restart) do_stop; do_start ;;
  status)  do_status ;;
  env)     echo "export SLURM_CONF=$CONF PATH=$BASE/bin:\$PATH" ;;
  *) echo "usage: $0 {install|start|stop|restart|status|env}" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real single-node SLURM on localhost for the tests: munged, slurmctld and slurmd (and, with --accounting,
# MariaDB + slurmdbd so that `sacct` works), all state, logs, sockets and configuration in one folder, on free ports,
# so it neither needs systemd nor touches /etc or a SLURM already on the machine. Needs root (SlurmUser=root).
#
#   tests/cluster/slurm.sh install [--accounting]           apt-get the packages, only those missing
#   tests/cluster/slurm.sh start STATE_DIR [--accounting]   start the daemons; writes STATE_DIR/env (SLURM_CONF=...,
#                                                           SLURM_TEST_BIN=...: put it first on PATH)
#   tests/cluster/slurm.sh stop STATE_DIR                   stop the daemons by the PIDs recorded in STATE_DIR/pids
#   tests/cluster/slurm.sh run [--accounting] -- CMD ARGS   install, start in a new temp folder, run CMD with
#                                                           SLURM_CONF set, stop the daemons pass or fail; CMD's status
#
# Every wait is bounded (SLURM_TEST_TIMEOUT seconds each, default 60). A failed start stops what it started and
# prints the daemons' logs (SLURM_TEST_KEEP=1 leaves them running to look at). The node declares max(nproc, 4) CPUs
# (SLURM_TEST_CPUS overrides), its default account is `ms2study` (accounting variant), and it has two stand-in GPUs.
# Stopping cancels the jobs left, stops the daemons (SIGTERM, SIGKILL after 15 s) and kills job processes of this
# cluster that outlived slurmd. The recipe and its pitfalls: ../shared/docs/FACTS.md ("Real SLURM on localhost").
# Without accounting, `sacct` fails: Snakemake's SLURM executor needs --slurm-status-command squeue there
# (profiles/slurm-noacct), or it waits forever for jobs that sacct does not list.
set -euo pipefail

TIMEOUT="${SLURM_TEST_TIMEOUT:-60}"
PACKAGES=(munge slurmctld slurmd slurm-client)
ACCOUNTING_PACKAGES=(slurmdbd mariadb-server)
ACCOUNT=ms2study # the SLURM account the tests' jobs are charged to (accounting variant)

log() { echo "slurm.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for DAEMON WHAT COMMAND...: retry COMMAND (10 s at most each) every 0.2 s until it succeeds; fail after
# $TIMEOUT seconds, or at once when DAEMON (a name in $STATE/pids) has exited.
wait_for() {
  local daemon=$1 what=$2 deadline pid
  shift 2
  deadline=$((SECONDS + TIMEOUT))
  pid=$(pid_of "$daemon")
  until timeout 10 "$@" >/dev/null 2>&1; do
    if ! alive "$pid"; then
      log "$daemon (pid $pid) exited while waiting for $what"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "gave up after ${TIMEOUT}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

cmd_install() {
  local wanted=("${PACKAGES[@]}")
  [[ "${1:-}" == --accounting ]] && wanted+=("${ACCOUNTING_PACKAGES[@]}")
  local missing
  missing=$(missing_packages "${wanted[@]}" | tr '\n' ' ')
  [[ -z "${missing// /}" ]] && return 0
  [[ $(id -u) == 0 ]] || die "packages missing ($missing) and not root: cannot apt-get them"
  command -v apt-get >/dev/null || die "packages missing ($missing) and there is no apt-get"
  log "installing $missing"
  # policy-rc.d keeps the packages' own init scripts from starting system daemons (no systemd here either).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1; fi
  local apt=(timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends)
  # shellcheck disable=SC2086
  if ! "${apt[@]}" $missing >/dev/null 2>&1; then
    timeout 300 apt-get update -qq >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    "${apt[@]}" $missing >/dev/null || { ((created_policy)) && rm -f "$policy"; die "apt-get install $missing failed"; }
  fi
  ((created_policy)) && rm -f "$policy"
  return 0
}

port_free() { ! grep -qi ":$(printf '%04X' "$1") " /proc/net/tcp /proc/net/tcp6 2>/dev/null; }

# free_ports N: N free TCP ports, counted from a random base so parallel clusters do not collide.
free_ports() {
  local n=$1 port=$((20000 + RANDOM % 30000)) found=()
  while ((${#found[@]} < n)); do
    port_free "$port" && found+=("$port")
    port=$((port + 1))
  done
  echo "${found[@]}"
}

# spawn NAME COMMAND...: start a daemon in the foreground mode of its own, in the background, and record its PID.
spawn() {
  local name=$1
  shift
  "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
  echo "$name $!" >>"$STATE/pids"
}

pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$STATE/pids"; }
# alive PID: running, and not a zombie (an exited daemon whose parent, init here, may never reap it).
alive() {
  [[ -n $1 ]] && kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat 2>/dev/null "/proc/$1/stat") || return 1
  [[ ${stat##*) } != Z* ]]
}

show_logs() {
  local f
  for f in "$STATE"/log/*; do
    [[ -s $f ]] || continue
    echo "----- $f (last 25 lines)" >&2
    tail -n 25 "$f" >&2
  done
}

# stop_daemons NAME...: SIGTERM to each (PIDs from $STATE/pids), SIGKILL to those still running 15 s later.
stop_daemons() {
  local name pid pids=() deadline
  for name in "$@"; do
    pid=$(pid_of "$name")
    alive "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$name:$pid")
  done
  deadline=$((SECONDS + 15))
  for name in "${pids[@]}"; do
    pid=${name#*:}
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
      log "${name%%:*} (pid $pid) ignored SIGTERM for 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cmd_stop() {
  STATE=$(realpath "${1:?usage: slurm.sh stop STATE_DIR}")
  [[ -f $STATE/pids ]] || return 0
  local pid
  # Cancel the jobs still queued or running first, so that slurmd ends their steps itself.
  pid=$(pid_of slurmctld)
  if alive "$pid"; then
    export SLURM_CONF=$STATE/etc/slurm.conf
    timeout 10 scancel --user="$(id -un)" >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 15))
    while [[ -n $(timeout 10 squeue -h -o %i 2>/dev/null | head -1) ]] && ((SECONDS < deadline)); do
      sleep 0.2
    done
  fi
  # The SLURM daemons first (slurmctld reports to slurmdbd as it stops), then the services they used.
  stop_daemons slurmd slurmctld
  stop_daemons slurmdbd mariadbd munged
  # Job processes a stopped slurmd left behind: SLURM jobs (SLURM_JOB_ID set) of this cluster (its state folder
  # in their environment), and slurmstepd processes, which slurmd started with that environment.
  local leftover environ env_text
  for environ in /proc/[0-9]*/environ; do
    leftover=${environ#/proc/}
    leftover=${leftover%/environ}
    [[ $leftover == "$$" ]] && continue
    env_text=$(tr '\0' '\n' 2>/dev/null <"$environ") || continue
    [[ $env_text == *"SLURM_CONF=$STATE/"* ]] || continue
    if [[ $env_text == *$'\n'SLURM_JOB_ID=* || $(cat 2>/dev/null "/proc/$leftover/comm") == slurmstepd ]]; then
      kill -KILL "$leftover" 2>/dev/null || true
    fi
  done
  mv "$STATE/pids" "$STATE/pids.stopped"
}

cmd_start() {
  STATE="${1:?usage: slurm.sh start STATE_DIR [--accounting]}"
  local accounting=0
  [[ "${2:-}" == --accounting ]] && accounting=1
  mkdir -p "$STATE"
  STATE=$(realpath "$STATE")
  [[ -e $STATE/pids ]] && die "$STATE/pids exists: a cluster may still run there (slurm.sh stop $STATE)"
  [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root; munged runs as user munge)"
  local missing
  missing=$(missing_packages "${PACKAGES[@]}" $( ((accounting)) && echo "${ACCOUNTING_PACKAGES[@]}"))
  [[ -z $missing ]] || die "not installed: $(echo $missing) (run: slurm.sh install$( ((accounting)) && echo ' --accounting'))"
  # munged refuses directories that others may write; its user must reach the socket.
  chmod 755 "$STATE"
  setpriv --reuid=munge --regid=munge --init-groups test -x "$STATE" ||
    die "user munge cannot reach $STATE (a parent folder is private): use a folder under /tmp"
  mkdir -p "$STATE"/{log,ctld,spool,munge,etc}
  : >"$STATE/pids"
  trap 'log "start failed"; show_logs; [[ -n ${SLURM_TEST_KEEP:-} ]] || cmd_stop "$STATE"' ERR
  trap 'cmd_stop "$STATE"; exit 130' INT TERM

  local host cpus mem ports ctld_port d_port dbd_port db_port
  host=$(hostname -s)
  # At least 4 CPUs (more than a 2-core machine has; config_overrides lets slurmd accept that): a job's own
  # Snakemake start-up is single-threaded, so a 2-thread job would otherwise leave a core of a CI machine idle.
  cpus=${SLURM_TEST_CPUS:-$(($(nproc) > 4 ? $(nproc) : 4))}
  mem=$(($(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo) - 1024))
  read -r ctld_port d_port dbd_port db_port <<<"$(free_ports 4)"

  # --- munge: own key, socket and logs in the state folder (not the system's /run/munge).
  local sock=$STATE/munge/munge.socket
  dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$STATE/munge"
  chmod 755 "$STATE/munge" # munged wants its socket's folder reachable by all, writable by none but munge
  chmod 400 "$STATE/munge/munge.key"
  spawn munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --socket="$sock" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
  wait_for munged "munged" bash -c "[[ -S '$sock' ]] && munge --socket='$sock' -n </dev/null | unmunge --socket='$sock'"

  # --- slurm.conf (gres.conf, slurmdbd.conf beside it): one node, this host, with two stand-in GPUs (/dev/null and
  # /dev/zero; nothing is bound) so that jobs asking for `--gpus=1` (profiles/slurm gives the embed rule gpu: 1) are
  # scheduled, two at a time; CUDA_VISIBLE_DEVICES is set in them, and torch still finds no GPU.
  local conf=$STATE/etc/slurm.conf storage=accounting_storage/none gather=jobacct_gather/none
  if ((accounting)); then storage=accounting_storage/slurmdbd; gather=jobacct_gather/linux; fi
  cat >"$conf" <<EOF
ClusterName=ms2test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=2
AccountingStorageType=$storage
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
$( ((accounting)) && printf 'AccountingStoragePass=%s\nAccountingStorageTRES=gres/gpu\nAccountingStoreFlags=job_comment' "$sock" )
JobAcctGatherType=$gather
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  echo "NodeName=$host Name=gpu File=/dev/null,/dev/zero" >"$STATE/etc/gres.conf" # stand-in devices
  export SLURM_CONF=$conf
  # srun that finds this cluster: snakemake-executor-plugin-slurm-jobstep (0.6.1) removes every SLURM_* variable but
  # the job's identity, SLURM_CONF included, before it calls srun inside a job; srun then looks for /etc/slurm.
  mkdir -p "$STATE/bin"
  printf '#!/bin/sh\nexport SLURM_CONF=%s\nexec %s "$@"\n' "$conf" "$(command -v srun)" >"$STATE/bin/srun"
  chmod 755 "$STATE/bin/srun"

  if ((accounting)); then
    # --- MariaDB on 127.0.0.1 with its own datadir (StorageHost=localhost would try the system socket instead).
    local db=$STATE/mysql dbsock=$STATE/mysql/mysqld.sock
    timeout "$TIMEOUT" mariadb-install-db --no-defaults --user=root --datadir="$db" --skip-test-db \
      >"$STATE/log/mariadb-install.out" 2>&1
    spawn mariadbd mariadbd --no-defaults --user=root --datadir="$db" --socket="$dbsock" --port="$db_port" \
      --bind-address=127.0.0.1 --pid-file="$db/mariadbd.pid" --log-error="$STATE/log/mariadb.log" \
      --skip-log-bin --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900
    wait_for mariadbd "mariadbd" mariadb-admin --no-defaults --socket="$dbsock" -u root ping
    timeout 30 mariadb --no-defaults --socket="$dbsock" -u root -e \
      "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
       GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
    # slurmdbd reads slurmdbd.conf beside $SLURM_CONF; it must be private to SlurmUser.
    cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf"
    spawn slurmdbd slurmdbd -D
    wait_for slurmdbd "slurmdbd" sacctmgr -n -i list cluster
    timeout 30 sacctmgr -i -Q add cluster ms2test >/dev/null
    timeout 30 sacctmgr -i -Q add account "$ACCOUNT" cluster=ms2test description=tests organization=tests >/dev/null
    timeout 30 sacctmgr -i -Q add user "$(id -un)" account="$ACCOUNT" cluster=ms2test >/dev/null
    timeout 30 sacctmgr -i -Q modify user where name="$(id -un)" set defaultaccount="$ACCOUNT" >/dev/null
  fi

  spawn slurmctld slurmctld -D -i -f "$conf"
  wait_for slurmctld "slurmctld" scontrol ping
  spawn slurmd slurmd -D -f "$conf"
  wait_for slurmd "slurmd to register its node as idle" \
    bash -c "sinfo -h -N -n '$host' -o '%t' | grep -qx idle"
  if ((accounting)); then
    wait_for slurmctld "slurmctld to register with slurmdbd" \
      bash -c "sacctmgr -n -P list cluster format=cluster,controlhost | grep -q '^ms2test|127.0.0.1'"
  fi

  {
    echo "SLURM_CONF=$conf"
    echo "SLURM_TEST_STATE=$STATE"
    echo "SLURM_TEST_ACCOUNTING=$accounting"
    echo "SLURM_TEST_ACCOUNT=$( ((accounting)) && echo "$ACCOUNT")"
    echo "SLURM_TEST_NODE=$host"
    echo "SLURM_TEST_BIN=$STATE/bin" # put first on PATH (its srun keeps SLURM_CONF in job steps)
  } >"$STATE/env"
  trap - ERR INT TERM
  log "cluster up in $STATE ($( ((accounting)) && echo 'with' || echo 'without') accounting; $cpus CPUs, ${mem} MB)"
}

cmd_run() {
  local accounting=()
  [[ "${1:-}" == --accounting ]] && { accounting=(--accounting); shift; }
  [[ "${1:-}" == -- ]] && shift
  (($#)) || die "usage: slurm.sh run [--accounting] -- COMMAND ARGS..."
  cmd_install "${accounting[@]}"
  RUN_STATE=$(mktemp -d "/tmp/slurm-test.XXXXXX")
  trap 'cmd_stop "$RUN_STATE"; rm -rf "$RUN_STATE"' EXIT
  trap 'exit 130' INT TERM
  (cmd_start "$RUN_STATE" "${accounting[@]}")
  set -a
  # shellcheck disable=SC1091
  source "$RUN_STATE/env"
  set +a
  export PATH=$SLURM_TEST_BIN:$PATH
  local status=0
  "$@" || status=$?
  return "$status"
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Start a real single-node SLURM cluster on localhost (munged + slurmctld + slurmd) for tests.
# Needs root (and apt-get, the first time). Debian 12 packages: Slurm 22.05, munge 0.5.15.
#
#   SLURM_DIR=$(mktemp -d) .ci/slurm/start_slurm.sh     # state, spool, logs and pid files go here
#   SLURM_DIR=...          .ci/slurm/stop_slurm.sh      # stops what this script started, by PID
#
# Environment (all optional):
#   SLURM_DIR        state folder, wiped and recreated (default /tmp/repro-slurm)
#   SLURM_NODE_CPUS  CPUs the node declares (default: what `slurmd -C` finds)
#   SLURM_NODE_MEM_MB RealMemory the node declares (default: 90 % of what `slurmd -C` finds)
#   SLURM_NODE_GPUS  fake GPUs (GRES gpu) the node declares (default 1)
#   SLURM_MIN_JOB_AGE seconds finished jobs stay visible to squeue/scontrol (default 3600)
# Declaring more CPUs/memory than the machine has is allowed (SlurmdParameters=config_overrides), so
# jobs that request a cluster-sized allocation (8 CPUs, 32 GB, 1 GPU) are schedulable on a 2-core VM.
# The GPUs are fake: GRES `gpu` backed by /dev/null-like files, so `--gpus=1` is scheduled and
# recorded on the job (TresPerJob=gres:gpu:1) but no device exists; torch still sees no CUDA device.
#
# The config goes to /etc/slurm/slurm.conf (the nested `srun` of snakemake's jobstep drops every
# SLURM_* variable, SLURM_CONF included, so the default location is the only one that works). An
# existing /etc/slurm/slurm.conf that this script did not write is never touched: the script refuses.
set -euo pipefail
SLURM_DIR=${SLURM_DIR:-/tmp/repro-slurm}
ETC=/etc/slurm
CONF=$ETC/slurm.conf
MARK="# written by repro .ci/slurm/start_slurm.sh"
die() { echo "start_slurm: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (slurmd runs jobs as root here)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "SLURM is not installed and apt-get is not available"
  echo "start_slurm: installing slurmctld slurmd slurm-client munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi
for f in "$CONF" "$ETC/gres.conf"; do
  if [ -e "$f" ] && ! grep -qxF "$MARK" "$f"; then
    die "$f exists and was not written by this script (a real cluster's config?); not touching it"
  fi
done
for p in 6817 6818; do   # slurmctld, slurmd
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
    die "TCP port $p is in use (another SLURM running? $(ss -Hltnp "sport = :$p" | head -1))"
  fi
done

# --- munge (shared by every SLURM on the host: reuse a running munged, else start ours) ---
[ -s /etc/munge/munge.key ] || mungekey -c -f -k /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
rm -rf "$SLURM_DIR"; mkdir -p "$SLURM_DIR"/{state,spool,log}
if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
  echo "start_slurm: reusing munged $(cat /run/munge/munged.pid)"
else
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$SLURM_DIR/munged.pid"   # ours: stop_slurm.sh stops it
fi

# --- node from `slurmd -C` (CPU topology, memory), optionally enlarged for the test ---
HW=$(slurmd -C | head -1)
REAL_CPUS=$(sed -nE 's/.* CPUs=([0-9]+).*/\1/p' <<<"$HW")
REAL_MEM=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$HW")
CPUS=${SLURM_NODE_CPUS:-$REAL_CPUS}
MEM=${SLURM_NODE_MEM_MB:-$(( REAL_MEM * 9 / 10 ))}
GPUS=${SLURM_NODE_GPUS:-1}
# A gpu GRES needs one device file per GPU (Count alone registers 0 GPUs and the node drains);
# harmless character devices stand in for them, so at most 5 fake GPUs.
FAKE_DEVS=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
[ "$GPUS" -ge 1 ] && [ "$GPUS" -le ${#FAKE_DEVS[@]} ] || die "SLURM_NODE_GPUS must be 1..${#FAKE_DEVS[@]}"
GPU_FILES=$(IFS=,; echo "${FAKE_DEVS[*]:0:$GPUS}")
if [ "$CPUS" = "$REAL_CPUS" ]; then
  NODE_HW=$(sed -E 's/^NodeName=[^ ]+ //; s/ ?RealMemory=[0-9]+//' <<<"$HW")
else  # one socket with $CPUS cores: a valid topology for any count
  NODE_HW="CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1"
fi
mkdir -p "$ETC"
cat > "$CONF" <<EOF
$MARK
# state, logs and pid files: $SLURM_DIR
ClusterName=repro-ci
SlurmctldHost=localhost
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Backfill every second (default 30 s): a job that fits now (a CPU job) starts at once instead of
# waiting behind one that waits for a GPU; the queue here is a few dozen jobs, so each pass is cheap.
SchedulerParameters=bf_interval=1
GresTypes=gpu
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=${SLURM_MIN_JOB_AGE:-3600}
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 $NODE_HW RealMemory=$MEM Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$ETC/gres.conf" <<EOF
$MARK
AutoDetect=off
NodeName=localhost Name=gpu File=$GPU_FILES
EOF

/usr/sbin/slurmctld -f "$CONF" -i
/usr/sbin/slurmd -f "$CONF" -N localhost
for _ in $(seq 1 100); do   # up to ~30 s; each sinfo is bounded (it retries for a minute otherwise)
  for d in slurmctld slurmd; do
    [ -s "$SLURM_DIR/$d.pid" ] || continue   # written a moment after the daemon forks
    kill -0 "$(cat "$SLURM_DIR/$d.pid")" 2>/dev/null || {
      echo "start_slurm: $d exited; its log:" >&2; tail -n 20 "$SLURM_DIR/log/$d.log" >&2; exit 1; }
  done
  if [ "$(timeout 3 sinfo -h -n localhost -o %T 2>/dev/null)" = idle ]; then
    echo "start_slurm: ready in $SLURM_DIR: slurmctld=$(cat "$SLURM_DIR/slurmctld.pid")" \
      "slurmd=$(cat "$SLURM_DIR/slurmd.pid") munged=$(cat /run/munge/munged.pid);" \
      "node CPUs=$CPUS RealMemory=$MEM Gres=gpu:$GPUS"
    exit 0
  fi
  sleep 0.2
done
echo "start_slurm: the node did not become idle" >&2
timeout 5 sinfo -R >&2 || true
for f in "$SLURM_DIR"/log/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
exit 1

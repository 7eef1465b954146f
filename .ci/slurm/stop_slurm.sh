#!/usr/bin/env bash
# Stop the daemons .ci/slurm/start_slurm.sh started, by PID from their pid files (never by name).
# munged is stopped only if start_slurm.sh started it. Safe to call twice or after a failed start.
SLURM_DIR=${SLURM_DIR:-/tmp/repro-slurm}
MARK="# written by repro .ci/slurm/start_slurm.sh"
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# cancel leftover jobs first, only while slurmctld is alive (scancel retries ~20 s otherwise)
if alive "$SLURM_DIR/slurmctld.pid"; then
  timeout 10 scancel --user "$(id -un)" 2>/dev/null || true
  sleep 1
fi
stop_pid() {  # $1 = pid file
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$1"
}
stop_pid "$SLURM_DIR/slurmd.pid"
stop_pid "$SLURM_DIR/slurmctld.pid"
if [ -f "$SLURM_DIR/munged.pid" ]; then   # ours: same PID as /run/munge/munged.pid
  stop_pid "$SLURM_DIR/munged.pid"
fi
for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
  [ -f "$f" ] && grep -qxF "$MARK" "$f" 2>/dev/null && rm -f "$f"
done
echo "stop_slurm: stopped (state left in $SLURM_DIR)"
exit 0

# Sourced by run_smoke.sh and run_rehearsal.sh: set-up, messages, the test cluster, bounded snakemake
# runs. The sourcing script sets NAME (its name in messages) and HERE (this folder). Environment:
# SLURM_CI_WORK (scratch folder; default a new mktemp -d), VENV (default .venv), SLURM_CI_SHARED=1 (the
# caller runs the cluster, started with start_slurm.sh and SLURM_DIR: the script then neither starts
# nor stops one; tests/test_slurm.py starts one for both scripts).
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"
VENV=${VENV:-$REPO/.venv}
PY=$VENV/bin/python
SMK=$VENV/bin/snakemake
[ -x "$SMK" ] || { echo "$NAME: $SMK not found (make the venv first: make test)" >&2; exit 1; }
WORK=${SLURM_CI_WORK:-$(mktemp -d "/tmp/repro-$NAME.XXXXXX")}
mkdir -p "$WORK"
export PATH=$VENV/bin:$PATH OMP_NUM_THREADS=1   # jobs inherit this environment (sbatch --export=ALL)
PROFILE=profiles/slurm/config.yaml
SHARED=${SLURM_CI_SHARED:-0}
[ "$SHARED" = 1 ] || export SLURM_DIR=$WORK/slurm
T0=$(date +%s)
stamp() { echo "$NAME: [$(( $(date +%s) - T0 )) s] $*"; }
fail() { echo "$NAME: FAIL: $*" >&2; exit 1; }

# slurm_up: the single-node SLURM. Its node declares 16 CPUs, 128 GB and 4 (fake) GPUs, more than this
# machine has (SlurmdParameters=config_overrides), so the profile's cluster-sized requests are schedulable
# and 4 one-GPU jobs (most of the DAG's) can run at a time.
slurm_up() {
  if [ "$SHARED" = 1 ]; then
    timeout 5 sinfo -h -n localhost -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated|completing)" \
      || fail "SLURM_CI_SHARED=1 but no SLURM node is up"
    stamp "using the running SLURM ($SLURM_DIR)"
  else
    SLURM_NODE_CPUS=16 SLURM_NODE_MEM_MB=131072 SLURM_NODE_GPUS=4 "$HERE/start_slurm.sh"
    stamp "SLURM up"
  fi
}

# slurm_down_and_report RC: stop the cluster if this script started it; PASSED/FAILED line
slurm_down_and_report() {
  if [ "$SHARED" != 1 ]; then stamp "stopping SLURM"; "$HERE/stop_slurm.sh" || true; fi
  [ "$1" = 0 ] && stamp "PASSED (work folder $WORK)" || stamp "FAILED (rc=$1; logs in $WORK)"
}

CHILD=
on_signal() {  # INT/TERM: snakemake cancels its SLURM jobs on SIGINT only (it ignores SIGTERM)
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    stamp "interrupted: SIGINT to snakemake (it scancels its jobs)"
    kill -INT -- "-$CHILD" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$CHILD" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$CHILD" 2>/dev/null
  fi
  exit 130
}

# run_bounded SECONDS LOG CMD...: CMD in its own process group (so SIGINT reaches it even when this
# script was started in the background), SIGINT after SECONDS; returns CMD's exit status.
run_bounded() {
  local secs=$1 log=$2 rc=0
  shift 2
  set -m
  timeout -s INT -k 60 "$secs" "$@" >"$log" 2>&1 &
  CHILD=$!
  set +m
  wait "$CHILD" || rc=$?
  CHILD=
  return $rc
}

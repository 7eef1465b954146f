#!/usr/bin/env bash
# The smoke workflow through a real SLURM cluster (CI; run as root from anywhere):
#   .ci/slurm/run_smoke.sh
# 1. starts a single-node SLURM on localhost (start_slurm.sh; stopped by PID on exit, whatever happens);
# 2. runs `snakemake --profile slurm --configfile workflow/configs/smoke.yaml` from the repository root
#    into a scratch folder, with overrides for this test cluster only: partition `debug` (added to the
#    profile's own default-resources), 4 jobs at a time, first status check after 2 s; the whole smoke
#    DAG, or only SLURM_CI_SMOKE_TARGETS (tests/test_slurm.py names a few jobs of each kind: the
#    rehearsal that follows it runs a whole DAG through SLURM);
# 3. checks every output of the run exists, and with `scontrol show job` (and the plugin's sbatch
#    lines) that each job got the runtime, memory, CPUs and GPUs Snakemake resolved (profile and rules);
# 4. runs the test-only workflow .ci/slurm/retry/Snakefile: a rule that fails on the cluster fails the
#    workflow with a clear message, `--retries 1` reruns a flaky rule (which then succeeds), and a job
#    with the profile's training-rule resources gets its GPU;
# 5. runs one lars cell with --config gpus_per_job=2: sbatch --gpus=2 and 2 x threads CPUs, recorded
#    by SLURM, and torchrun inside the job runs 2 ranks (world_size 2 in the cell's result).
# Environment: SLURM_CI_WORK (scratch folder; default a new mktemp -d), SLURM_CI_SMOKE_TARGETS (targets
# of step 1, space-separated; default the whole DAG), SLURM_CI_TIMEOUT (seconds for the smoke run,
# default 1800), SLURM_CI_JOBS (jobs at a time, default 4), VENV (default .venv),
# SLURM_CI_SHARED=1 (use the cluster the caller started with start_slurm.sh and SLURM_DIR; neither
# start nor stop one: tests/test_slurm.py starts one for this script and run_rehearsal.sh).
# Exit status 0 only if every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=run_smoke
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cleanup() {
  local rc=$?
  slurm_down_and_report $rc
  exit $rc
}
trap cleanup EXIT
trap on_signal INT TERM
slurm_up

read -r -a DEFRES <<<"$("$PY" "$HERE/check_jobs.py" default-resources "$PROFILE" --partition debug)"
# (`--default-resources` on the command line replaces the profile's list: DEFRES is that list + partition)
# 4 jobs at a time on 2 cores: about half of each SLURM job's turnaround is waiting (sbatch, srun,
# two Snakemake start-ups, status polls), so 4 keep both cores busy (shared machine: 285 s with 4,
# 676 s with 2 under a heavier load).
# --cores 2: a group job (the profile's job grouping) runs its jobs side by side up to --cores threads
# and asks for the GPUs of one such layer, so 2 keeps a group of 1-GPU jobs within the node's GPUs.
# Status checks every 2 s (Snakemake's default 10 s is meant for a busy cluster's squeue).
COMMON=(--profile slurm --jobs "${SLURM_CI_JOBS:-4}" --cores 2 --slurm-init-seconds-before-status-checks 2
        --seconds-between-status-checks 2 --verbose --slurm-keep-successful-logs)

# ---- 1. the smoke DAG (or SLURM_CI_SMOKE_TARGETS) through SLURM ------------------------------------
SMOKE=$WORK/smoke
read -r -a TARGETS <<<"${SLURM_CI_SMOKE_TARGETS:-}"
stamp "snakemake --profile slurm --configfile workflow/configs/smoke.yaml -d $SMOKE ${TARGETS[*]:-(whole DAG)}"\
" (log: $WORK/smoke.log)"
rc=0
run_bounded "${SLURM_CI_TIMEOUT:-1800}" "$WORK/smoke.log" \
  "$SMK" "${COMMON[@]}" --default-resources "${DEFRES[@]}" --configfile workflow/configs/smoke.yaml \
  -d "$SMOKE" "${TARGETS[@]}" || rc=$?
T_SMOKE=$(( $(date +%s) - T0 ))
if [ $rc != 0 ]; then
  grep -v -E "^(DEBUG|Status query|active_jobs|missing_sacct)" "$WORK/smoke.log" | tail -n 60 >&2
  for f in "$SMOKE"/results/logs/*/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; } >&2; done
  fail "the smoke workflow failed through SLURM (rc=$rc)"
fi
stamp "smoke run finished through SLURM"
grep -q "Falling back to 'sacct'" "$WORK/smoke.log" && fail "the plugin fell back to sacct (MinJobAge too low?)"

# every output of the run exists and is up to date
"$SMK" --configfile workflow/configs/smoke.yaml -d "$SMOKE" --summary "${TARGETS[@]}" >"$WORK/summary.tsv" 2>"$WORK/summary.err" \
  || { cat "$WORK/summary.err" >&2; fail "snakemake --summary failed"; }
"$PY" - "$WORK/summary.tsv" "$SMOKE" <<'EOF'
import csv, pathlib, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
bad = [(r["output_file"], r["status"]) for r in rows if r["status"] != "ok" or not (pathlib.Path(sys.argv[2]) / r["output_file"]).exists()]
if not rows or bad:
    sys.exit(f"run_smoke: outputs missing or not up to date: {bad or 'no rows in --summary'}")
print(f"run_smoke: all {len(rows)} outputs of the smoke run exist and are up to date")
EOF
"$SMK" --configfile workflow/configs/smoke.yaml -d "$SMOKE" -n "${TARGETS[@]}" >"$WORK/dryrun.log" 2>&1 || true
grep -q "Nothing to be done" "$WORK/dryrun.log" || fail "a dry run after the SLURM run still has jobs (see $WORK/dryrun.log)"

stamp "requested resources vs what SLURM recorded (scontrol show job):"
"$PY" "$HERE/check_jobs.py" check "$WORK/smoke.log" --profile "$PROFILE" --require-sbatch-lines --show-sbatch

# ---- 2. failure, retries and a GPU job (test-only workflow) -------------------------------------
RETRY=$WORK/retry
read -r -a PROBE <<<"$("$PY" "$HERE/check_jobs.py" probe-resources "$PROFILE" gpu_probe)"
stamp "failure/retry workflow with --retries 1 --keep-going (log: $WORK/retry.log)"
# (an account too: -A reaches SLURM; --cores caps rule threads, so gpu_probe's 2 need --cores >= 2)
rc=0
run_bounded 600 "$WORK/retry.log" "$SMK" -s "$HERE/retry/Snakefile" "${COMMON[@]}" \
  --default-resources "${DEFRES[@]}" slurm_account=repro-ci \
  --set-resources "${PROBE[@]}" --cores 4 --retries 1 --keep-going --show-failed-logs -d "$RETRY" || rc=$?
[ $rc = 1 ] || { tail -n 40 "$WORK/retry.log" >&2; fail "expected the workflow with a failing rule to exit 1, got $rc"; }
grep -q "Error in rule always_fails" "$WORK/retry.log" || fail "no 'Error in rule always_fails' in the log"
grep -q "SLURM status is: 'FAILED'" "$WORK/retry.log" || fail "no \"SLURM status is: 'FAILED'\" in the log"
[ -f "$RETRY/flaky.txt" ] || fail "flaky.txt missing: --retries 1 did not rerun the flaky rule"
[ -f "$RETRY/gpu_probe.txt" ] || fail "gpu_probe.txt missing"
[ ! -e "$RETRY/always_fails.txt" ] || fail "always_fails.txt exists"
grep -q "threads=2 .*CUDA_VISIBLE_DEVICES=0" "$RETRY/gpu_probe.txt" || fail "the GPU job saw no GPU: $(cat "$RETRY/gpu_probe.txt")"
echo "run_smoke: the failing rule's message, as Snakemake printed it:"
grep -m1 -A12 "^Error in rule always_fails" "$WORK/retry.log" | grep -v -E "^\s*(jobid|output|shell|external_jobid):|^=+$" \
  | cut -c1-170 | sed 's/^/    /'
grep -m1 -E "^Exiting because a job execution failed" "$WORK/retry.log" | sed 's/^/    /' || true
echo "    gpu_probe.txt: $(cat "$RETRY/gpu_probe.txt")"
"$PY" "$HERE/check_jobs.py" check "$WORK/retry.log" --profile "$PROFILE" --require-sbatch-lines \
  --expect flaky=FAILED,COMPLETED always_fails=FAILED,FAILED
stamp "failure/retry checks passed"

# ---- 3. several GPUs per job: a DDP training rule with gpus_per_job=2 ----------------------------
# One lars cell of the smoke config (its input copied from step 1, so it is the only job; step 1's
# targets must include a lars cell or the whole DAG): Snakemake
# must resolve gpu=2 and cpus_per_task=2 x threads, SLURM must record them (check_jobs.py), and
# torchrun inside the job's srun step must run 2 ranks (gloo on CPU: the node's GPUs are fake).
DDP=$WORK/ddp
DDP_CELL=results/lars/cells/alexnet_bn/lars/b32_e1.json
mkdir -p "$DDP/results/data"
cp "$SMOKE/results/data/classification.npz" "$DDP/results/data/"
stamp "a lars cell with gpus_per_job=2 through SLURM (log: $WORK/ddp.log)"
rc=0
run_bounded 600 "$WORK/ddp.log" "$SMK" "$DDP_CELL" "${COMMON[@]}" --default-resources "${DEFRES[@]}" \
  --configfile workflow/configs/smoke.yaml --config gpus_per_job=2 -d "$DDP" || rc=$?
DDP_LOG=$DDP/results/logs/lars/cell_alexnet_bn_lars_b32_e1.log
if [ $rc != 0 ]; then
  tail -n 40 "$WORK/ddp.log" >&2; [ -f "$DDP_LOG" ] && tail -n 30 "$DDP_LOG" >&2
  fail "the 2-rank lars cell failed through SLURM (rc=$rc)"
fi
grep -q "torchrun --standalone --nproc_per_node=2 -m repro.lars cell" "$WORK/ddp.log" \
  || fail "the lars cell was not launched with torchrun --nproc_per_node=2"
grep -q "(rank 1 of 2)" "$DDP_LOG" || fail "no '(rank 1 of 2)' in $DDP_LOG"
"$PY" "$HERE/check_jobs.py" check "$WORK/ddp.log" --profile "$PROFILE" --require-sbatch-lines --show-sbatch
"$PY" - "$HERE" "$WORK/ddp.log" "$DDP/$DDP_CELL" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1])
from check_jobs import parse_log, sbatch_flags
subs = [s for s in parse_log(open(sys.argv[2]).read()) if s["rule"] == "lars_cell"]
if len(subs) != 1:
    sys.exit(f"run_smoke: expected one lars_cell SLURM job, got {len(subs)}")
res, threads = subs[0]["resources"], subs[0]["threads"]
want = {"gpu": 2, "cpus_per_task": 2 * threads}
got = {k: res.get(k) for k in want}
flags = sbatch_flags(subs[0]["sbatch"])
if got != want or (flags["gpu"], flags["cpus"]) != ("2", str(2 * threads)):
    sys.exit(f"run_smoke: lars_cell resolved {got}, sbatch flags {flags}; expected {want}")
world = json.load(open(sys.argv[3]))["world_size"]
if world != 2:
    sys.exit(f"run_smoke: the cell ran with world_size {world}, expected 2")
print(f"run_smoke: gpus_per_job=2 job: --gpus={flags['gpu']} --cpus-per-task={flags['cpus']}, world_size {world}")
EOF
stamp "gpus_per_job=2 checks passed"
echo "run_smoke: timings: smoke run through SLURM ${T_SMOKE} s (incl. start), total $(( $(date +%s) - T0 )) s"

#!/usr/bin/env bash
# Full scale, rehearsed: the whole full-scale DAG through a real SLURM cluster on miniature copies of
# the real releases (CI, `make rehearsal`; run as root from anywhere):
#   .ci/slurm/run_rehearsal.sh
# 1. starts a single-node SLURM on localhost (start_slurm.sh; stopped by PID on exit), unless
#    SLURM_CI_SHARED=1 says the caller already runs one (the slow tests start it once for both runs);
# 2. builds the real-format miniatures (tests/realformat: COCO 2017, VOC 2007, CIFAR-10, MNIST, videos,
#    a stand-in ResNet-50 weights file) and serves them on 127.0.0.1 at a free port; the server writes
#    the config that points `downloads` at that port with the archives' md5s;
# 3. runs `snakemake --profile slurm --configfile workflow/configs/full.yaml workflow/configs/rehearsal.yaml
#    <that config>` into a scratch folder (partition `debug`, first status check after 2 s);
# 4. checks every output of the DAG exists and is up to date, a dry run has nothing left to do, every
#    SLURM job COMPLETED with the resources Snakemake resolved (scontrol), and the claims and report
#    were written at `scale: full`; prints how many jobs went out in how many sbatch submissions;
# 5. switches the LARS study to ImageNet (the ILSVRC2012 miniature's three release tars in a local
#    folder, as a user supplies the real ones) and runs one cell through SLURM in a second folder: rule
#    imagenet verifies and unpacks the tars, the cell streams the JPEGs at 64 px through AlexNet's layers.
# Environment: SLURM_CI_WORK (scratch folder; default a new mktemp -d), SLURM_CI_TIMEOUT (seconds for
# the run, default 2400), SLURM_CI_JOBS (SLURM jobs at a time, default 12), VENV (default .venv),
# SLURM_CI_SHARED=1 (use the running cluster; SLURM_DIR must then name its folder).
# Exit status 0 only if every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=run_rehearsal
# shellcheck source=lib.sh
. "$HERE/lib.sh"
CONFIGS=(workflow/configs/full.yaml workflow/configs/rehearsal.yaml "$WORK/rehearsal-downloads.yaml")
RUN=$WORK/run

SERVER=
cleanup() {
  local rc=$?
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; fi
  slurm_down_and_report $rc
  exit $rc
}
trap cleanup EXIT
trap on_signal INT TERM

# The run's files peak at about 4.5 GB (ResNet-50 detectors and towers, each written once; finished
# jobs delete their checkpoints): refuse before any work when the scratch folder's disk has less.
NEED_MB=5000
FREE_MB=$(df -Pm "$WORK" | awk 'NR == 2 {print $4}')
[ "$FREE_MB" -ge "$NEED_MB" ] || fail "$WORK has $FREE_MB MB free; the rehearsal needs about $NEED_MB MB"

# ---- 1. SLURM ------------------------------------------------------------------------------------
slurm_up
SUBMITTED_BEFORE=$(timeout 10 squeue -h --states=all -o %i | wc -l)

# ---- 2. the miniature releases, served on 127.0.0.1 ------------------------------------------------
GEN=$WORK/rehearsal-downloads.yaml
rm -f "$GEN"
IMNET_CFG=$WORK/rehearsal-imagenet.yaml
PYTHONPATH=$REPO/tests "$PY" -m realformat serve "$WORK/fixtures" --config-out "$GEN" \
  --imagenet-config-out "$IMNET_CFG" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 600); do
  [ -s "$GEN" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; fail "the fixture server exited"; }
  sleep 0.2
done
[ -s "$GEN" ] || fail "the fixture server wrote no config in 120 s (see $WORK/server.log)"
stamp "miniature releases served: $(sed -n 1p "$GEN" | sed 's/.*served at //')"

# ---- 3. the full-scale DAG through SLURM -----------------------------------------------------------
read -r -a DEFRES <<<"$("$PY" "$HERE/check_jobs.py" default-resources "$PROFILE" --partition debug)"
rc=0
stamp "snakemake --profile slurm --configfile ${CONFIGS[*]} -d $RUN (log: $WORK/rehearsal.log)"
# --cores 2: a group job runs its jobs side by side up to --cores threads and asks for the GPUs of one
# such layer, so 2 keeps a group of 1-GPU jobs within the node's (fake) GPUs
# status checks every 2 s (Snakemake's default 10 s is meant for a busy cluster's squeue)
run_bounded "${SLURM_CI_TIMEOUT:-2400}" "$WORK/rehearsal.log" "$SMK" --profile slurm --jobs "${SLURM_CI_JOBS:-12}" \
  --cores 2 --slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2 --verbose \
  --slurm-keep-successful-logs \
  --default-resources "${DEFRES[@]}" --configfile "${CONFIGS[@]}" -d "$RUN" || rc=$?
T_RUN=$(( $(date +%s) - T0 ))
if [ $rc != 0 ]; then
  grep -v -E "^(DEBUG|Status query|active_jobs|missing_sacct)" "$WORK/rehearsal.log" | tail -n 60 >&2
  grep -l -E "Error|Traceback" "$RUN"/results/logs/*/*.log 2>/dev/null | while read -r f; do
    echo "--- $f" >&2; tail -n 15 "$f" >&2; done
  fail "the rehearsal failed through SLURM (rc=$rc)"
fi
stamp "rehearsal DAG finished through SLURM"
grep -q "Falling back to 'sacct'" "$WORK/rehearsal.log" && fail "the plugin fell back to sacct (MinJobAge too low?)"

# ---- 4. checks ---------------------------------------------------------------------------------------
"$SMK" --configfile "${CONFIGS[@]}" -d "$RUN" --summary >"$WORK/summary.tsv" 2>"$WORK/summary.err" \
  || { cat "$WORK/summary.err" >&2; fail "snakemake --summary failed"; }
"$SMK" --configfile "${CONFIGS[@]}" -d "$RUN" -n >"$WORK/dryrun.log" 2>&1 || true
grep -q "Nothing to be done" "$WORK/dryrun.log" || fail "a dry run after the SLURM run still has jobs (see $WORK/dryrun.log)"
"$PY" "$HERE/check_rehearsal.py" "$WORK/summary.tsv" "$RUN"

stamp "requested resources vs what SLURM recorded (scontrol show job):"
"$PY" "$HERE/check_jobs.py" check "$WORK/rehearsal.log" --profile "$PROFILE" --require-sbatch-lines
SUBMITTED=$(( $(timeout 10 squeue -h --states=all -o %i | wc -l) - SUBMITTED_BEFORE ))
echo "run_rehearsal: SLURM's own count (squeue --states=all): $SUBMITTED jobs submitted during the rehearsal"

# ---- 5. ImageNet for the LARS study: rule imagenet and one streaming cell -------------------------
IMNET=$WORK/imagenet
IMNET_CELL=results/lars/cells/alexnet_bn/lars/b16_e1.json
stamp "LARS on the ILSVRC2012 miniature: $IMNET_CELL through SLURM (log: $WORK/imagenet.log)"
rc=0
run_bounded 600 "$WORK/imagenet.log" "$SMK" "$IMNET_CELL" --profile slurm --jobs "${SLURM_CI_JOBS:-12}" --cores 2 \
  --slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2 --verbose \
  --default-resources "${DEFRES[@]}" \
  --configfile "${CONFIGS[@]}" "$IMNET_CFG" -d "$IMNET" || rc=$?
if [ $rc != 0 ]; then
  grep -v -E "^(DEBUG|Status query|active_jobs|missing_sacct)" "$WORK/imagenet.log" | tail -n 40 >&2
  for f in "$IMNET"/results/logs/data/imagenet.log "$IMNET"/results/logs/lars/*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; } >&2; done
  fail "the ImageNet LARS cell failed through SLURM (rc=$rc)"
fi
"$PY" "$HERE/check_jobs.py" check "$WORK/imagenet.log" --profile "$PROFILE" --require-sbatch-lines
"$PY" - "$IMNET" "$IMNET_CELL" <<'EOF_PY'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
cell = json.loads((run / sys.argv[2]).read_text())
data = cell["data"]
if data["source"] != "imagenet" or data["image_size"] != 64 or not cell["runs"]:
    sys.exit(f"run_rehearsal: the ImageNet cell read {data} with {len(cell['runs'])} runs")
for sub in ("train", "val"):
    if not any((run / "results/data/imagenet" / sub).rglob("*.JPEG")):
        sys.exit(f"run_rehearsal: results/data/imagenet/{sub} holds no JPEG")
accs = [round(r["test_acc"], 1) for r in cell["runs"]]
print(f"run_rehearsal: ImageNet cell: {data['num_classes']} classes, {data['n_train']} train / {data['n_test']} test "
      f"images at {data['image_size']} px, {len(cell['runs'])} run(s), test accuracy {accs}")
EOF_PY
stamp "timings: rehearsal DAG through SLURM ${T_RUN} s (incl. fixtures), total $(( $(date +%s) - T0 )) s"

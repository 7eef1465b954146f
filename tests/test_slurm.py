"""The slurm profile, and the smoke workflow through a real single-node SLURM cluster.

The fast tests check the profile against the rules: Snakemake silently ignores a `set-resources`
entry whose rule does not exist (checked: no error, no warning), so a misspelt or stale entry would
quietly leave a training rule without its GPU. The slow test runs .ci/slurm/run_smoke.sh (real
slurmctld + slurmd + munge on localhost; needs root, and apt-get the first time).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SMOKE, run_snakemake

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def rule_blocks() -> dict[str, str]:
    """Rule name -> the text of its block, from workflow/rules/*.smk."""
    blocks: dict[str, str] = {}
    for path in RULE_FILES:
        parts = re.split(r"^(?:rule|checkpoint) (\w+):[ \t]*$", path.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            blocks[name] = body.split("\n\n\n")[0]
    return blocks


def training_rules() -> list[str]:
    """Rules that train models: they declare a `gpu` resource (gpu=0 locally) or `threads: THREADS`."""
    return sorted(
        name
        for name, body in rule_blocks().items()
        if re.search(r"^\s+gpu\s*=", body, flags=re.M) or re.search(r"^\s+threads:\s*THREADS\b", body, flags=re.M)
    )


def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_every_training_rule_gets_a_gpu_and_its_threads_as_cpus_on_slurm() -> None:
    entries = profile().get("set-resources") or {}

    def has_gpu(res: dict) -> bool:  # gpu: N -> --gpus=N, or gres: "gpu:N" -> --gres=gpu:N
        return int(res.get("gpu", 0) or 0) >= 1 or str(res.get("gres", "")).startswith("gpu")

    missing = [
        r
        for r in training_rules()
        if not has_gpu(entries.get(r) or {}) or (entries.get(r) or {}).get("cpus_per_task") != "threads"
    ]
    assert not missing, (
        "training rules without a GPU entry in profiles/slurm/config.yaml; add under set-resources:\n"
        + "\n".join(f'  {r}: {{gpu: 1, cpus_per_task: "threads"}}' for r in missing)
    )


def test_every_profile_entry_names_an_existing_rule() -> None:
    prof = profile()
    known = set(rule_blocks())
    for key in ("set-resources", "set-threads"):
        stale = sorted(set(prof.get(key) or {}) - known)
        assert not stale, f"profiles/slurm/config.yaml {key} names rules that do not exist (ignored silently): {stale}"
    # a default cpus_per_task would override every rule's threads in --cpus-per-task
    assert "cpus_per_task" not in (prof.get("default-resources") or {})
    assert prof["slurm-status-command"] == "squeue"  # sacct without accounting makes snakemake hang


def test_profile_resolves_gpu_and_cpus_for_training_jobs(tmp_path: Path) -> None:
    """Dry run with the slurm profile: training jobs get gpu=1 and cpus_per_task == their threads."""
    proc = run_snakemake(
        ["-n", "--profile", "slurm", "--cores", "8", "--configfile", str(SMOKE), "--config", "threads=3"],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout + proc.stderr
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", out, flags=re.M | re.S)
    train = set(training_rules())
    cpus = []
    for name, body in jobs:
        res = re.search(r"resources: (.*)", body)
        res = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        threads = re.search(r"threads: (\d+)", body)
        threads = threads.group(1) if threads else "1"
        if name in train:
            assert res.get("gpu") == "1" or res.get("gres", "").startswith("gpu"), (name, res)
            assert res.get("cpus_per_task") == threads, (name, threads, res)  # -> sbatch --cpus-per-task
            cpus.append(int(threads))
        else:
            assert res.get("gpu", "0") == "0", (name, res)
            assert "cpus_per_task" not in res, (name, res)  # the plugin then uses the threads
    if train:
        assert 3 in cpus, f"no training job took config threads=3 (cpus_per_task seen: {sorted(set(cpus))})"


def _why_no_slurm() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start slurmctld/slurmd/munged (CI runs as root)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "# written by repro .ci/slurm/start_slurm.sh" not in conf.read_text(errors="replace"):
        return "/etc/slurm/slurm.conf belongs to another SLURM (a real cluster node?); not starting a test cluster"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_why_no_slurm() is not None, reason=_why_no_slurm() or "")
def test_smoke_workflow_on_a_real_slurm_cluster(tmp_path: Path) -> None:
    """.ci/slurm/run_smoke.sh: the smoke DAG via `--profile slurm`, resources checked with scontrol,
    a failing rule fails the workflow with SLURM's status, `--retries` reruns a flaky rule."""
    env = dict(os.environ, SLURM_CI_WORK=str(tmp_path / "slurm-ci"), VENV=str(Path(sys.executable).parents[1]))
    proc = subprocess.Popen(
        ["bash", str(REPO / ".ci" / "slurm" / "run_smoke.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=2400)  # the script bounds its own snakemake runs (1800 s + 600 s)
    except subprocess.TimeoutExpired:
        # SIGINT to the group, as Ctrl-C would: snakemake scancels its jobs, the script's trap stops the daemons
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail("run_smoke.sh took more than 40 min:\n" + out[-6000:])
    assert proc.returncode == 0, out[-8000:]
    assert "outputs of the smoke DAG exist and are up to date" in out, out[-4000:]
    assert re.search(r"all \d+ SLURM jobs match the requested resources", out), out[-4000:]
    assert "Error in rule always_fails" in out and "SLURM status is: 'FAILED'" in out
    assert "run_smoke: [" in out and "PASSED" in out

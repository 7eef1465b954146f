"""The slurm profile, and the smoke workflow through a real single-node SLURM cluster.

The fast tests check the profile against the rules: Snakemake silently ignores a `set-resources`
entry whose rule does not exist (checked: no error, no warning), so a misspelt or stale entry would
quietly leave a training rule without its GPU; and an entry for a DDP training rule would silently
override the gpus_per_job GPUs/CPUs that rule declares. The slow test runs .ci/slurm/run_smoke.sh (real
slurmctld + slurmd + munge on localhost; needs root, and apt-get the first time).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
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


def ddp_rules() -> list[str]:
    """Training rules whose shell is ddp_shell(...) (common.smk): config gpus_per_job DDP ranks (torchrun)."""
    return sorted(name for name, body in rule_blocks().items() if re.search(r"^\s+ddp_shell\(", body, flags=re.M))


def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_every_training_rule_gets_its_gpus_and_cpus_on_slurm() -> None:
    """One-process GPU rules: a profile entry {gpu: 1, cpus_per_task: "threads"}. DDP training rules:
    no such entry (it would pin them to its values), the rule declares gpu=GPUS_PER_JOB and
    cpus_per_task=ddp_cpus itself, since only the Snakefile can read config gpus_per_job."""
    entries = profile().get("set-resources") or {}
    blocks = rule_blocks()
    ddp = ddp_rules()
    assert {"lars_cell", "detect_train", "detect_transfer", "pretrain_train", "gan_train"} <= set(ddp) <= set(
        training_rules()
    ), ddp

    def has_gpu(res: dict) -> bool:  # gpu: N -> --gpus=N, or gres: "gpu:N" -> --gres=gpu:N
        return int(res.get("gpu", 0) or 0) >= 1 or str(res.get("gres", "")).startswith("gpu")

    missing = [
        r
        for r in training_rules()
        if r not in ddp
        and (not has_gpu(entries.get(r) or {}) or (entries.get(r) or {}).get("cpus_per_task") != "threads")
    ]
    assert not missing, (
        "training rules without a GPU entry in profiles/slurm/config.yaml; add under set-resources:\n"
        + "\n".join(f'  {r}: {{gpu: 1, cpus_per_task: "threads"}}' for r in missing)
    )
    for r in ddp:
        pinned = sorted(set(entries.get(r) or {}) & {"gpu", "gres", "cpus_per_task", "cpus_per_gpu"})
        assert not pinned, f"profiles/slurm/config.yaml pins {pinned} of DDP rule {r}: gpus_per_job would be ignored"
        assert re.search(r"^\s+gpu=GPUS_PER_JOB,", blocks[r], flags=re.M), f"rule {r}: declare gpu=GPUS_PER_JOB"
        assert re.search(r"^\s+cpus_per_task=ddp_cpus,", blocks[r], flags=re.M), (
            f"rule {r}: declare cpus_per_task=ddp_cpus"
        )
    for r, body in blocks.items():  # N GPUs only for a job that starts N ranks
        if re.search(r"GPUS_PER_JOB|ddp_cpus", body):
            assert r in ddp, f"rule {r} requests gpus_per_job GPUs/CPUs but its shell is not ddp_shell(...)"


def test_every_profile_entry_names_an_existing_rule() -> None:
    prof = profile()
    known = set(rule_blocks())
    for key in ("set-resources", "set-threads"):
        stale = sorted(set(prof.get(key) or {}) - known)
        assert not stale, f"profiles/slurm/config.yaml {key} names rules that do not exist (ignored silently): {stale}"
    # a default cpus_per_task would override every rule's threads in --cpus-per-task
    assert "cpus_per_task" not in (prof.get("default-resources") or {})
    assert prof["slurm-status-command"] == "squeue"  # sacct without accounting makes snakemake hang


@pytest.mark.parametrize("gpus_per_job", [1, 2])
def test_profile_resolves_gpu_and_cpus_for_training_jobs(tmp_path: Path, gpus_per_job: int) -> None:
    """Dry run with the slurm profile. gpus_per_job=1: every training job gets gpu=1 and cpus_per_task ==
    its threads (as before the key existed). 2: the DDP training jobs get gpu=2 and 2 x threads CPUs."""
    top = tmp_path / "threads.yaml"  # the LARS cells take the top-level threads, as at full scale
    # digits at its own seed count: one gan_train job per seed beside ring8's gan_train_seeds jobs
    top.write_text(yaml.safe_dump({"threads": 3, "gpus_per_job": gpus_per_job, "lars": {"threads": None},
                                   "gan": {"experiments": {"digits": {"seeds": 1}}}}))
    proc = run_snakemake(
        ["-n", "--profile", "slurm", "--cores", "8", "--configfile", str(SMOKE), str(top)],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout + proc.stderr
    # top-level job blocks and the jobs inside group jobs (indented), each up to its blank line
    jobs = re.findall(r"^\s*rule (\w+):\n(.*?)(?=^\s*$|\Z)", out, flags=re.M | re.S)
    train, ddp = set(training_rules()), set(ddp_rules())
    cpus, ddp_seen = [], set()
    for name, body in jobs:
        res = re.search(r"resources: (.*)", body)
        res = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        threads = re.search(r"threads: (\d+)", body)
        threads = int(threads.group(1)) if threads else 1
        if name in train:
            n = gpus_per_job if name in ddp else 1
            ddp_seen.update({name} & ddp)
            assert res.get("gpu") == str(n) or (n == 1 and res.get("gres", "").startswith("gpu")), (name, res)
            assert res.get("cpus_per_task") == str(n * threads), (name, threads, res)  # -> sbatch --cpus-per-task
            cpus.append(threads)
        else:
            assert res.get("gpu", "0") == "0", (name, res)
            assert "cpus_per_task" not in res, (name, res)  # the plugin then uses the threads
    if train:
        assert 3 in cpus, f"no training job took config threads=3 (threads seen: {sorted(set(cpus))})"
        assert ddp_seen == ddp, f"the smoke DAG has no job of DDP rules {sorted(ddp - ddp_seen)}"


def _why_no_slurm() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start slurmctld/slurmd/munged (CI runs as root)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "# written by repro .ci/slurm/start_slurm.sh" not in conf.read_text(errors="replace"):
        return "/etc/slurm/slurm.conf belongs to another SLURM (a real cluster node?); not starting a test cluster"
    return None


SLURM_CI = REPO / ".ci" / "slurm"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One single-node SLURM (start_slurm.sh) for both slow tests of this module; stopped at the end.

    The node is the one the scripts declare on their own (lib.sh: 16 CPUs, 128 GB, 4 fake GPUs); the scripts
    get SLURM_CI_SHARED=1 and start or stop nothing. Returns the environment to run them with.
    """
    state = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, SLURM_DIR=str(state), VENV=str(Path(sys.executable).parents[1]))
    node = dict(SLURM_NODE_CPUS="16", SLURM_NODE_MEM_MB="131072", SLURM_NODE_GPUS="4")
    start = subprocess.run(["bash", str(SLURM_CI / "start_slurm.sh")], env=env | node, capture_output=True,
                           text=True, timeout=600)
    if start.returncode != 0:
        subprocess.run(["bash", str(SLURM_CI / "stop_slurm.sh")], env=env, capture_output=True, timeout=120)
        pytest.fail(f"start_slurm.sh failed:\n{start.stdout[-3000:]}\n{start.stderr[-3000:]}")
    try:
        yield dict(env, SLURM_CI_SHARED="1")
    finally:
        subprocess.run(["bash", str(SLURM_CI / "stop_slurm.sh")], env=env, capture_output=True, timeout=120)


def run_ci_script(script: str, env: dict[str, str], work: Path, timeout: float) -> str:
    """Run .ci/slurm/<script> with SLURM_CI_WORK=work; its output. SIGINT to its process group after
    ``timeout`` s, as Ctrl-C would (snakemake scancels its jobs), then fail the test."""
    proc = subprocess.Popen(["bash", str(SLURM_CI / script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(env, SLURM_CI_WORK=str(work)), cwd=REPO, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{script} took more than {timeout / 60:.0f} min:\n" + out[-6000:])
    assert proc.returncode == 0, out[-8000:]
    return out


SMOKE_SLURM_TARGETS = ("results/lars/cells/alexnet_bn/lars/b16_e1.json", "results/gan/ring8/mgan/s0.json",
                       "results/gan/digits/gan/s0.json")


@pytest.mark.slow
@pytest.mark.skipif(_why_no_slurm() is not None, reason=_why_no_slurm() or "")
def test_smoke_workflow_on_a_real_slurm_cluster(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    """.ci/slurm/run_smoke.sh: smoke jobs via `--profile slurm`, resources checked with scontrol,
    a failing rule fails the workflow with SLURM's status, `--retries` reruns a flaky rule, and a lars
    cell with gpus_per_job=2 gets --gpus=2 and runs as 2 torchrun ranks inside its SLURM job."""
    # the script bounds its own snakemake runs (1800 s + 600 s); the whole-DAG run through SLURM is the
    # rehearsal's, so here a few jobs of each kind: data, DDP training (lars, gan), one-process training
    # (the GAN scorer) and a small aggregate
    env = dict(slurm_cluster, SLURM_CI_SMOKE_TARGETS=" ".join(SMOKE_SLURM_TARGETS))
    out = run_ci_script("run_smoke.sh", env, tmp_path / "slurm-ci", timeout=2400)
    assert "outputs of the smoke run exist and are up to date" in out, out[-4000:]
    assert re.search(r"all \d+ SLURM jobs match the requested resources", out), out[-4000:]
    assert "Error in rule always_fails" in out and "SLURM status is: 'FAILED'" in out
    assert re.search(r"gpus_per_job=2 job: --gpus=2 --cpus-per-task=\d+, world_size 2", out), out[-4000:]
    assert "run_smoke: [" in out and "PASSED" in out


@pytest.mark.slow
@pytest.mark.skipif(_why_no_slurm() is not None, reason=_why_no_slurm() or "")
def test_full_scale_rehearsal_on_a_real_slurm_cluster(tmp_path: Path, slurm_cluster: dict[str, str]) -> None:
    """.ci/slurm/run_rehearsal.sh: every rule of the full-scale DAG on the real-format miniatures
    (tests/realformat, served on 127.0.0.1) through `--profile slurm`, small jobs grouped into few
    submissions, every output checked, claims and report at scale full; then one LARS cell on the
    ILSVRC2012 miniature's tars (rule imagenet included)."""
    # 12 SLURM jobs at a time: most of a rehearsal job's turnaround is SLURM's and Snakemake's overhead
    # (sbatch, srun, two Snakemake start-ups, status polls), so more jobs in flight overlap it: 12 took
    # 540 s to the end of the DAG where 6 took 600 s on 2 cores (the node's 4 fake GPUs still cap the
    # one-GPU jobs at 4)
    out = run_ci_script("run_rehearsal.sh", dict(slurm_cluster, SLURM_CI_JOBS="12"), tmp_path / "rehearsal",
                        timeout=2700)
    assert re.search(r"all \d+ SLURM jobs match the requested resources", out), out[-4000:]
    m = re.search(r"sbatch submissions: (\d+) for (\d+) Snakemake jobs \((\d+) group jobs", out)
    assert m and int(m.group(3)) >= 1 and int(m.group(1)) < int(m.group(2)), out[-4000:]
    assert "report results/report/index.html at scale full" in out, out[-4000:]
    assert "corrupt video(s) skipped" in out and "PASSED" in out
    assert re.search(r"ImageNet cell: 3 classes, \d+ train / \d+ test images at 64 px", out), out[-4000:]

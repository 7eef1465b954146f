"""Reruns are never stale, as a user hits them through Snakemake (smoke config, one target at a time).

* a config edit, an upstream data change and ``--forcerun`` each retrain: the result equals a clean
  run with the same config in a fresh folder, and no job log says "resumed";
* a job SIGKILLed mid-training (Snakemake and the job, as when a node dies) resumes from its
  checkpoint and ends with outputs equal to an uninterrupted run's, its per-step log included;
* a job killed mid-training whose config is then edited sets the old checkpoint aside (a WARNING in the
  job log) and starts fresh, to the numbers of a clean run with the new config;
* the README's rebuild command works from a shell that has no venv on PATH.

Checkpoint-level cases (corrupt, other seed/input, every stage's CLI) are in test_common.py and
test_bad_input.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, SMOKE, run_snakemake, snakemake_env
from test_resume import _strip

pytestmark = pytest.mark.slow

CELL = "results/lars/cells/alexnet/sgd/b32_e1.json"
CELL_LOG = "results/logs/lars/cell_alexnet_sgd_b32_e1.log"


def _snake(workdir: Path, target: str, *configs: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    args = [target, "--cores", "2", *extra, "--configfile", str(SMOKE), *map(str, configs)]
    proc = run_snakemake(args, workdir, timeout=600)
    log = "".join(p.read_text()[-1500:] for p in workdir.glob("results/logs/**/*.log"))
    assert proc.returncode == 0, proc.stderr[-3000:] + log[-3000:]
    return proc


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _result(workdir: Path, rel: str) -> dict:
    return _strip(json.loads((workdir / rel).read_text()))


def _job_log(workdir: Path) -> str:
    return (workdir / CELL_LOG).read_text()


def test_config_edit_data_change_and_forcerun_each_retrain(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _snake(work, CELL)
    first = _result(work, CELL)

    edit = _yaml(tmp_path / "edit.yaml", "lars:\n  momentum: 0.8\n")
    _snake(work, CELL, edit)
    assert "resumed" not in _job_log(work)
    _snake(tmp_path / "clean_edit", CELL, edit)
    assert _result(work, CELL) == _result(tmp_path / "clean_edit", CELL) != first

    data = _yaml(tmp_path / "data.yaml", "data:\n  classification:\n    n_train: 600\n")
    _snake(work, CELL, edit, data)  # the data job reruns, and so does the cell on its new input
    assert "resumed" not in _job_log(work)
    _snake(tmp_path / "clean_data", CELL, edit, data)
    changed = _result(work, CELL)
    assert changed == _result(tmp_path / "clean_data", CELL) and changed["data"]["n_train"] < first["data"]["n_train"]

    _snake(work, CELL, edit, data, extra=("--forcerun", "lars_cell"))
    assert "resumed" not in _job_log(work) and _result(work, CELL) == changed
    assert not list((work / "results" / "checkpoints").rglob("*.pt"))  # finished jobs delete theirs


# ------------------------------------------------------------------ kill mid-training (detection)
DETECT = "results/detect/fpn/s0/metrics.json"
DETECT_DIR = "results/detect/fpn/s0"
DETECT_CKPT = "results/checkpoints/detect/fpn_s0/latest.pt"
LONGER = "detect:\n  iterations: 24\n  checkpoint_every: 4\n"


def _kill_mid_training(workdir: Path, *configs: Path, total: int) -> int:
    """Start Snakemake on the detector; SIGKILL it and its job (one process group, as when a node dies)
    once the job's checkpoint holds an unfinished run. Returns the checkpoint's step."""
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), DETECT,
           "--cores", "2", "--configfile", str(SMOKE), *map(str, configs)]
    log = open(workdir.parent / f"{workdir.name}_killed.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=snakemake_env(), cwd=REPO,
                            start_new_session=True)
    ckpt = workdir / DETECT_CKPT
    deadline = time.monotonic() + 300
    try:
        while True:
            try:
                step = int(torch.load(ckpt, weights_only=True)["step"]) if ckpt.exists() else None
            except (EOFError, RuntimeError, OSError):  # caught between write and rename
                step = None
            if step is not None and step < total:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return step
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before a mid-training checkpoint was caught")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared in time")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _rerun_after_kill(workdir: Path, *configs: Path) -> str:
    run_snakemake(["--unlock", "--configfile", str(SMOKE), *map(str, configs)], workdir)
    _snake(workdir, DETECT, *configs, extra=("--rerun-incomplete",))
    return (workdir / "results/logs/detect/train_fpn_s0.log").read_text()


def _same_detector(a: Path, b: Path) -> None:
    assert _result(a, DETECT) == _result(b, DETECT)
    assert (a / DETECT_DIR / "train_log.csv").read_text() == (b / DETECT_DIR / "train_log.csv").read_text()
    assert (a / DETECT_DIR / "model.pt").read_bytes() == (b / DETECT_DIR / "model.pt").read_bytes()


def test_killed_job_resumes_to_the_outputs_of_an_uninterrupted_run(tmp_path: Path) -> None:
    longer = _yaml(tmp_path / "longer.yaml", LONGER)
    clean = tmp_path / "clean"
    _snake(clean, DETECT, longer)
    work = tmp_path / "work"
    step = _kill_mid_training(work, longer, total=24)
    log = _rerun_after_kill(work, longer)
    assert f"resumed from step {step}" in log or "resumed from step" in log
    _same_detector(work, clean)  # metrics, weights and the whole per-step log
    rows = (work / DETECT_DIR / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(1, 25)]


def test_killed_job_with_an_edited_config_starts_fresh(tmp_path: Path) -> None:
    longer = _yaml(tmp_path / "longer.yaml", LONGER)
    edit = _yaml(tmp_path / "edit.yaml", "detect:\n  lr: 0.01\n")
    work = tmp_path / "work"
    _kill_mid_training(work, longer, total=24)
    log = _rerun_after_kill(work, longer, edit)
    assert "belongs to another run (config.lr: 0.02 -> 0.01)" in log and "starting fresh" in log
    assert "resumed" not in log and (work / DETECT_CKPT).with_name("latest.stale.pt").exists()
    clean = tmp_path / "clean"
    _snake(clean, DETECT, longer, edit)
    _same_detector(work, clean)


def test_readme_rebuild_command_works_from_a_shell_without_the_venv(tmp_path: Path) -> None:
    """`.venv/bin/snakemake --cores 2 results/data/detection` from a fresh shell: no activated venv, no
    `python` on PATH that has the project's packages."""
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    cmd = [str(Path(sys.executable).parent / "snakemake"), "results/data/detection", "--cores", "2",
           "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(SMOKE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / "data" / "detection" / "train.json").exists()

"""Shared test helpers: run Snakemake on this repository's Snakefile in a scratch folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "workflow" / "configs" / "smoke.yaml"
FULL = REPO / "workflow" / "configs" / "full.yaml"


def torch_single_thread() -> None:
    """Tests run torch with one thread (2 oversubscribed threads are 20-120x slower)."""
    import torch

    torch.set_num_threads(1)


def snakemake_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_snakemake(args: list[str], workdir: Path, *, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``snakemake`` with this repo's Snakefile in ``workdir``; output captured as text."""
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), timeout=timeout, cwd=REPO)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch_single_thread()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG on the smoke config, run once per test session; returns its work folder.

    Stage tests that check real pipeline outputs request this fixture instead of running their own.
    """
    workdir = tmp_path_factory.mktemp("smoke")
    proc = run_snakemake(["--cores", "2", "--configfile", str(SMOKE)], workdir, timeout=900)
    if proc.returncode != 0:
        logs = "\n".join(
            f"--- {p.relative_to(workdir)}\n{p.read_text()[-1500:]}" for p in sorted(workdir.glob("results/logs/**/*.log"))
        )
        pytest.fail(f"smoke run failed:\n{proc.stderr[-4000:]}\n{logs[-6000:]}")
    return workdir


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the smoke DAG (the ``smoke_run`` fixture) are end-to-end runs: mark them ``slow``,
    so ``make test-fast`` (``pytest -m "not slow"``) leaves them to ``make test`` and CI."""
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)

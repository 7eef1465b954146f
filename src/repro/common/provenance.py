"""Provenance records: config, seed, git commit, package versions, host and start/end time.

Every result is accompanied by one: JSON results embed it under ``"provenance"`` when they are
dicts; other files (and folders) get a ``<name>.provenance.json`` beside them.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from repro.common.io import atomic_write_json

PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "scikit-learn",
    "scikit-image",
    "opencv-contrib-python-headless",
    "pycocotools",
    "pandas",
    "matplotlib",
    "snakemake",
)


def now_iso() -> str:
    """UTC time as an ISO-8601 string."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The checkout's commit (with ``-dirty`` if it has local changes), or ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None if absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance_record(
    config: Any, seed: int | None, *, started: str | None = None, stage: str | None = None
) -> dict[str, Any]:
    """Build the provenance dict for one result."""
    return {
        "stage": stage,
        "config": config,
        "seed": seed,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "started": started,
        "finished": now_iso(),
    }


def sidecar_path(result: str | os.PathLike) -> Path:
    """Where the provenance of ``result`` lives: inside it if a folder, beside it otherwise."""
    result = Path(result)
    if result.is_dir():
        return result / "provenance.json"
    return result.with_name(result.name + ".provenance.json")


def write_provenance(
    result: str | os.PathLike,
    config: Any,
    seed: int | None,
    *,
    started: str | None = None,
    stage: str | None = None,
) -> Path:
    """Write the provenance record for ``result`` to its sidecar path and return that path."""
    return atomic_write_json(
        sidecar_path(result), provenance_record(config, seed, started=started, stage=stage)
    )

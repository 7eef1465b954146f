"""One cell of the large-batch study as a job: load the data, search the LR and train the seeds, write the JSON.

``python -m repro.lars cell`` (:mod:`repro.lars.cli`) only parses the job and calls :func:`run_cell_job` (on
every rank of the run: one process, or N under DDP).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.common.checkpoint import RunCheckpoint, run_identity
from repro.common.distributed import barrier, distributed
from repro.common.io import atomic_write_json
from repro.common.provenance import provenance_record
from repro.lars.data import load_classification, prepare, source_of
from repro.lars.study import NOT_SHAPING_RUN, run_cell


@dataclass(frozen=True)
class CellJob:
    """One ``cell`` command: model, arm, batch and epochs of the study, its data and output (from the rule)."""

    model: str
    arm: str
    batch: int
    epochs: int
    seed: int
    inp: Path
    out: Path
    started: str
    threads: int = 1
    checkpoint_dir: Path | None = None


def run_cell_job(job: CellJob, cfg: dict[str, Any]) -> None:
    """Train the cell on every rank of the run; rank 0 writes its JSON and deletes the checkpoint."""
    if job.batch < 1 or job.epochs < 1:
        raise ValueError(f"lars cell: --batch and --epochs must be >= 1, got {job.batch}, {job.epochs}")
    arrays = load_classification(job.inp)
    with distributed(cfg["device"], key="lars.device") as (info, device):
        ckpt = RunCheckpoint(job.checkpoint_dir, run_identity(
            stage="lars.cell", config=cfg, seed=job.seed, ignore=NOT_SHAPING_RUN, inputs={"data": job.inp},
            model=job.model, arm=job.arm, batch=job.batch, epochs=job.epochs), is_main=info.is_main)
        data = prepare(arrays, val_fraction=cfg["val_fraction"], device=device, image_size=cfg.get("image_size"),
                       workers=job.threads)  # ImageNet: crop size, DataLoader processes
        result = _cell_result(job, cfg, data, device, info, ckpt)
        if info.is_main:
            atomic_write_json(job.out, result)
            ckpt.finish()  # the cell's outputs are written: a later rerun starts fresh
        barrier(info)


def _cell_result(job: CellJob, cfg: dict[str, Any], data: Any, device: Any, info: Any, ckpt: Any) -> dict[str, Any]:
    seeds = [job.seed + i for i in range(cfg["seeds"])]
    print(
        f"lars cell {job.model}/{job.arm} B={job.batch} E={job.epochs} on {device}"
        f"{f' (rank {info.rank} of {info.world_size})' if info.enabled else ''}: "
        f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test images "
        f"{data.image_size}x{data.image_size}, seeds {seeds}",
        file=sys.stderr,
    )
    result = run_cell(data, cfg, model_name=job.model, arm=job.arm, batch=job.batch, epochs=job.epochs,
                      seeds=seeds, ckpt=ckpt, dist=info)
    return {
        "model": job.model,
        "arm": job.arm,
        "batch": job.batch,
        "epochs": job.epochs,
        "seeds": seeds,
        "data": {"path": str(job.inp), "source": source_of(job.inp), "n_train": len(data.train), "n_val": len(data.val),
                 "n_test": len(data.test), "image_size": data.image_size, "num_classes": data.num_classes},
        **result,
        "world_size": info.world_size,
        "provenance": provenance_record(cfg, job.seed, started=job.started, stage="lars.cell"),
    }

"""The large-batch study over its cells: the study JSON, the accuracy-vs-batch figure and the claims."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from repro.common.claims import write_claims
from repro.common.io import atomic_write_json, read_json
from repro.common.provenance import provenance_record, write_provenance
from repro.lars.claims import build_claims, paper_curves, scale_note, summarize_cells
from repro.lars.data import dataset_name
from repro.lars.figures import plot_study


def aggregate(cfg: dict[str, Any], paths: list[Path], *, out: Path, figure: Path, claims: Path, started: str) -> None:
    """All cells -> the study JSON (per cell: LR grid, chosen LR, divergence count, accuracy), the figure and
    the claims file; one line per cell and per claim on stderr."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"lars aggregate: missing cell results {missing}")
    cells = [read_json(p) for p in paths]
    for path, cell in zip(paths, cells):
        for key in ("model", "arm", "batch", "epochs", "runs", "chosen_lr_ref", "seeds"):
            if key not in cell:
                raise ValueError(f"lars aggregate: {path} lacks {key!r} (not a cell result?)")
    summary = summarize_cells(cells)
    note = scale_note(cfg, cells)
    rows = build_claims(summary, cfg, scale_note=note)
    write_claims(claims, rows)
    dataset = dataset_name(cells[0]["data"]["path"], cells[0]["data"].get("source"))
    plot_study(summary, cfg, paper_curves(), figure, dataset=dataset)
    write_provenance(figure, cfg, None, started=started, stage="lars.aggregate")
    runs = [
        {k: cell[k] for k in ("model", "arm", "batch", "epochs")} | {k: v for k, v in r.items() if k not in ("epoch_train_loss", "layer_ratios")}
        for cell in cells
        for r in cell["runs"]
    ]
    atomic_write_json(
        out,
        {
            # per cell: LR grid, chosen LR (and its ratio to linear scaling), divergence count, accuracy
            "cells": [summary[k] for k in sorted(summary)],
            "runs": runs,
            "scale_note": note,
            "provenance": provenance_record(cfg, None, started=started, stage="lars.aggregate"),
        },
    )
    for key in sorted(summary):
        c = summary[key]
        lr = f"{c['chosen_lr']:.3g}" if c["chosen_lr"] is not None else "none"
        acc = f"{c['test_acc_mean']:.1f}%" if c["test_acc_mean"] is not None else "n/a"
        print(f"{'/'.join(map(str, key))}: LR {lr} of {c['lr_grid']}, {c['n_diverged']} diverged, test {acc}",
              file=sys.stderr)
    for row in rows:
        ci = f"[{row.ours_ci95[0]:+.1f}, {row.ours_ci95[1]:+.1f}]" if row.ours_ci95 else "n/a"
        mean = f"{row.ours_mean:+.1f}" if row.ours_mean is not None else "n/a"
        print(f"{row.claim_id}: paper {row.paper_value:+.1f}, ours {mean} CI {ci} -> {row.verdict}",
              file=sys.stderr)

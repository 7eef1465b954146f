"""The report's own figure: for each paper, the paper's number beside ours (mean ± 95% CI) per claim."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from repro.common.io import atomic_savefig

VERDICT_COLOURS = {"holds": "#2e7d32", "fails": "#c62828", "inconclusive": "#9e9e9e"}
PAPER_COLOUR = "#1f4e79"


def apply_style() -> None:
    """One consistent matplotlib style for every figure of the pipeline."""
    plt.rcParams.update(
        {"figure.dpi": 100, "savefig.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False}
    )


def paper_vs_ours(claims: pd.DataFrame, paper: str, out: str | os.PathLike) -> Path | None:
    """Small multiples, one panel per claim with a number on both sides: paper (left) and ours with its
    CI (right), coloured by verdict. Units differ between claims (and sometimes between the paper and
    our scale, e.g. % vs fraction), so each panel has its own y axis labelled with the metric."""
    rows = claims[(claims["paper"] == paper) & claims["ours_mean"].notna()]
    if rows.empty:
        return None
    apply_style()
    n = len(rows)
    cols = min(4, n)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(max(2.6 * cols, 4.8), 2.4 * nrows + 0.3), squeeze=False)
    for ax, (_, row) in zip(axes.flat, rows.iterrows()):
        ours = float(row["ours_mean"])
        ci = row["ours_ci95"]
        colour = VERDICT_COLOURS.get(row["verdict"], "#9e9e9e")
        if row["paper_value"] is not None and pd.notna(row["paper_value"]):
            ax.bar([0], [float(row["paper_value"])], color=PAPER_COLOUR, width=0.6)
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            err = [[ours - float(ci[0])], [float(ci[1]) - ours]]
            ax.bar([1], [ours], color=colour, width=0.6, yerr=err, capsize=4)
        else:
            ax.bar([1], [ours], color=colour, width=0.6)
        ax.set_xticks([0, 1], ["paper", f"ours (n={int(row['n_seeds'])})"])
        ax.set_ylabel(str(row["metric"])[:40])
        ax.set_title(str(row["claim_id"])[:38], fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"arXiv {paper}: paper vs ours (colour = verdict)", fontsize=10)
    fig.tight_layout()
    return atomic_savefig(fig, out)

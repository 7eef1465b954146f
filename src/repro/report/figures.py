"""The report's own figure: for each paper, a forest plot of its claims (ours with CI, threshold, paper value)."""

from __future__ import annotations

import math
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


def _is_value(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def forest_rows(claims: pd.DataFrame, paper: str) -> pd.DataFrame:
    """The paper's rows a forest plot can show: a test, a mean and a CI (one-seed and one-run rows have none)."""
    rows = claims[(claims["paper"] == paper) & claims["test"].isin(("t", "welch", "equivalence"))]
    return rows[rows["ours_mean"].notna() & rows["ours_ci95"].map(lambda ci: isinstance(ci, (list, tuple)))]


def forest_plot(claims: pd.DataFrame, paper: str, out: str | os.PathLike) -> Path | None:
    """One line per tested claim of ``paper``: our mean and 95% CI (coloured by verdict) against the
    row's threshold (dashed; an equivalence claim's +-margin band shaded) with the paper's value marked
    (diamond). Units differ between claims (fractions, pp, counts, ratios), so each line has its own x
    axis; a paper value far outside our range is written beside the line instead of stretching the axis."""
    rows = forest_rows(claims, paper)
    if rows.empty:
        return None
    apply_style()
    fig, axes = plt.subplots(len(rows), 1, figsize=(10.5, 0.55 * len(rows) + 0.9), squeeze=False)
    for ax, (_, row) in zip(axes[:, 0], rows.iterrows()):
        mean, (low, high) = float(row["ours_mean"]), (float(v) for v in row["ours_ci95"])
        thr = float(row["threshold"]) if _is_value(row["threshold"]) else 0.0
        marks = [low, high, mean, thr] + ([-thr] if row["test"] == "equivalence" else [])
        span = (max(marks) - min(marks)) or abs(thr) or 1.0
        pv = float(row["paper_value"]) if _is_value(row["paper_value"]) else None
        near = pv is not None and min(marks) - 3 * span <= pv <= max(marks) + 3 * span
        lo_x, hi_x = min(marks + ([pv] if near else [])), max(marks + ([pv] if near else []))
        pad = 0.08 * ((hi_x - lo_x) or span)
        ax.set_xlim(lo_x - pad, hi_x + pad)
        if row["test"] == "equivalence":
            ax.axvspan(-thr, thr, color="#cfd8dc", alpha=0.6, lw=0)
        else:
            ax.axvline(thr, color="#555", ls="--", lw=1)
        colour = VERDICT_COLOURS.get(row["verdict"], "#9e9e9e")
        ax.errorbar([mean], [0], xerr=[[mean - low], [high - mean]], fmt="o", color=colour, ms=5, capsize=3, lw=2)
        if near:
            ax.plot([pv], [0], marker="D", mfc="none", mec=PAPER_COLOUR, ms=7, mew=1.5, ls="none")
        ax.set_yticks([0], [str(row["claim_id"])[:52]], fontsize=7.5)
        ax.set_ylim(-1, 1)
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="x", labelsize=7, pad=1)
        label = f"{row['verdict']} (n={int(row['n_seeds'])})"
        if isinstance(row.get("power"), str) and row["power"]:
            need = row["n_needed"]
            label += f", {row['power']}" + (f", n needed {int(need)}" if _is_value(need) else "")
        ax.text(1.01, 0.62, label, transform=ax.transAxes, fontsize=7, va="center", color=colour)
        if pv is not None and not near:
            ax.text(1.01, 0.12, f"paper {pv:.4g}: off this scale ({'right' if pv > hi_x else 'left'})",
                    transform=ax.transAxes, fontsize=6.5, va="center", color=PAPER_COLOUR)
    fig.suptitle(f"arXiv {paper}: our mean and 95% CI against the claim's threshold (dashed; band: equivalence "
                 "margin), paper's value ◇; colour = verdict", fontsize=8.5)
    fig.tight_layout(h_pad=0.2)
    fig.subplots_adjust(left=0.3, right=0.68)
    return atomic_savefig(fig, out)

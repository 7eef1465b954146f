"""Gather the stages' claims files and the papers' reference values into one table.

Beside each row's verdict: why an inconclusive one is so (``power``, from
:func:`repro.common.claims.inconclusive_reason`) and whether a decisive one survives Holm over the
paper's claims and over the whole table (:mod:`repro.report.family`).

Every claim of ``repro/common/paper_values/*.yaml`` (entries of kind ``claim``) appears in the table: claims a stage measured carry
its numbers; reference entries no stage produced are marked "not run at this scale". Claims with a
missing measurement stay in the table with empty values rather than breaking the report.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import pandas as pd

from repro.common.claims import CLAIM_KEYS, NO_EFFECT, NO_TEST, UNDERPOWERED, ClaimRow, inconclusive_reason, read_claims
from repro.common.paper_values import all_paper_values
from repro.report.family import add_holm

PAPERS = {
    "1708.02901": "Transitive Invariance for Self-supervised Visual Representation Learning (Wang, He, Gupta 2017)",
    "1708.03888": "Large Batch Training of Convolutional Networks — LARS (You, Gitman, Ginsburg 2017)",
    "1612.03144": "Feature Pyramid Networks for Object Detection (Lin et al. 2017)",
    "1612.02136": "Mode Regularized Generative Adversarial Networks (Che et al. 2017)",
    "1708.02556": "MGAN: Training GANs with Multiple Generators (Hoang et al. 2018)",
    "1612.01543": "Towards the Limit of Network Quantization (Choi, El-Khamy, Lee 2017)",
    "1703.06870": "Mask R-CNN (He, Gkioxari, Dollár, Girshick 2017): its RoIAlign-vs-RoIPool claim only",
}

NOT_RUN = "not run at this scale"
COLUMNS = ["stage", *CLAIM_KEYS, "where", "unit", "status", "power", "holm_paper", "holm_table"]


def collect_claims(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per claim: measured rows from the claims files plus unmeasured reference entries."""
    refs = all_paper_values()
    rows = []
    seen: set[str] = set()
    for path in paths:
        stage = Path(path).stem
        for row in read_claims(path):
            ref = refs.get(row["claim_id"], {})
            # a row no experiment stands behind at this scale (no value, no seed) is a note, not a verdict
            status = ("measured" if row["ours_mean"] is not None
                      else NOT_RUN if not row["n_seeds"] else "missing value")
            # the reference's unit names its own value; a stage that rescaled it (% to a fraction) says the
            # row's unit in its metric instead
            unit = ref.get("unit", "") if row["paper_value"] == ref.get("value") else ""
            rows.append({"stage": stage, **row, "where": ref.get("where", ""), "unit": unit, "status": status})
            seen.add(row["claim_id"])
    for claim_id, ref in refs.items():
        if claim_id in seen or ref["kind"] != "claim":
            continue  # measured, or a reference number (table cell) rather than a claim
        row = ClaimRow(paper=str(ref["paper"]), claim_id=claim_id, claim=ref["claim"], metric=ref.get("metric", ref["unit"]),
                       paper_value=ref["value"], ours_mean=None, ours_ci95=None, n_seeds=0, verdict="inconclusive",
                       scale_note=NOT_RUN)
        rows.append({"stage": ref["stage"], **asdict(row), "where": ref["where"], "unit": ref["unit"], "status": NOT_RUN})
    for row in rows:
        row["power"] = inconclusive_reason(row) if row["status"] != NOT_RUN else ""
    frame = add_holm(pd.DataFrame(rows, columns=COLUMNS).astype({"holm_paper": object, "holm_table": object}))
    return frame.sort_values(["paper", "stage", "claim_id"], kind="stable").reset_index(drop=True)


SUMMARY_COLUMNS = ["paper", "title", "holds", "fails", UNDERPOWERED, NO_EFFECT, NO_TEST, NOT_RUN,
                   "holds_holm_paper", "holds_holm_table", "fails_holm_paper", "fails_holm_table"]


def verdict_summary(claims: pd.DataFrame) -> pd.DataFrame:
    """Per paper: how many claims hold, fail, are inconclusive for each reason, and were not run; and how
    many holds and fails survive Holm over the paper's claims and over the whole table."""
    out = []
    for paper, group in claims.groupby("paper", sort=True):
        measured = group[group["status"] != NOT_RUN]
        row = {"paper": paper, "title": PAPERS.get(paper, "")}
        for verdict in ("holds", "fails"):
            row[verdict] = int((measured["verdict"] == verdict).sum())
            for family in ("paper", "table"):
                row[f"{verdict}_holm_{family}"] = int(((measured["verdict"] == verdict)
                                                       & (measured[f"holm_{family}"] == True)).sum())  # noqa: E712
        for reason in (UNDERPOWERED, NO_EFFECT):
            row[reason] = int((measured["power"] == reason).sum())
        row[NO_TEST] = int(((measured["verdict"] == "inconclusive")
                            & ~measured["power"].isin((UNDERPOWERED, NO_EFFECT))).sum())
        row[NOT_RUN] = int((group["status"] == NOT_RUN).sum())
        out.append(row)
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def stage_wall_times(benchmark_dir: str | os.PathLike | None) -> pd.DataFrame:
    """Wall seconds per stage and per job, from Snakemake's ``benchmark:`` TSV files (empty if none)."""
    rows = []
    root = Path(benchmark_dir) if benchmark_dir is not None else None
    for tsv in sorted(root.glob("**/*.tsv")) if root is not None and root.is_dir() else []:
        try:
            seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])
        except (KeyError, IndexError, ValueError, pd.errors.EmptyDataError):
            continue
        rel = tsv.relative_to(root)
        rows.append({"stage": rel.parts[0], "job": str(rel.with_suffix("")), "seconds": seconds})
    return pd.DataFrame(rows, columns=["stage", "job", "seconds"])

"""Where each failing claim is heading: a stage rerun at k times the default's data and steps.

``python -m repro.report.trend config`` writes the default config with one stage's data sizes and
training lengths (:data:`SCALED`) multiplied by k; the ``scale_trend`` rules run the stage with it in
a folder of its own (the default run's outputs are never touched). ``python -m repro.report.trend plot``
puts, for every claim that fails or is inconclusive at the default, our mean and 95% CI at 1x, 2x,
4x beside the paper's value and the claim's threshold: does the effect move toward the paper's?
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from repro.common.claims import read_claims
from repro.common.io import atomic_write_bytes

# per claims file (the report's "stage"): the config keys scaled with the run, as dotted paths
# ("*" = every entry of that mapping). Data: the synthetic set's size; steps: the training length.
SCALED: dict[str, tuple[str, ...]] = {
    "gan": ("gan.experiments.*.steps",),
    "quant": ("quant.nets.*.epochs", "quant.nets.*.prune_epochs"),
    "lars": ("data.classification.n_train",),  # epochs stay: k x the images is k x the optimizer steps
    "graph": ("data.videos.n_videos", "graph.features.steps"),
    "pretrain": ("data.videos.n_videos", "graph.features.steps", "pretrain.steps"),
    "fpn": ("data.detection.n_train", "detect.iterations"),
    "ti_transfer": ("data.detection.n_train", "data.videos.n_videos", "graph.features.steps", "pretrain.steps",
                    "detect.transfer.iterations"),
}
TESTED = ("t", "welch", "equivalence")


def _scale(node: Any, path: list[str], factor: int) -> None:
    head, rest = path[0], path[1:]
    keys = list(node) if head == "*" else [head] if head in node else []
    for key in keys:
        if rest:
            _scale(node[key], rest, factor)
        elif isinstance(node[key], list):
            node[key] = [int(v * factor) for v in node[key]]
        else:
            node[key] = int(node[key] * factor)


def scaled_stage(claims_stem: str) -> str:
    """The :data:`SCALED` entry of a claims file's stem: the stem itself, or the stage before a data
    set suffix (``ti_transfer_voc2007`` -> ``ti_transfer``: one claims file per transfer data set)."""
    for stage in sorted(SCALED, key=len, reverse=True):
        if claims_stem == stage or claims_stem.startswith(stage + "_"):
            return stage
    raise ValueError(f"scale_trend: no scaled keys for stage {claims_stem!r} (known: {sorted(SCALED)})")


def scaled_config(config: dict[str, Any], stage: str, factor: int) -> dict[str, Any]:
    """``config`` with the :data:`SCALED` keys of ``stage`` (a claims file's stem) multiplied by
    ``factor`` (a copy)."""
    out = copy.deepcopy(config)
    for dotted in SCALED[scaled_stage(stage)]:
        _scale(out, dotted.split("."), factor)
    return out


def trend_table(default: Path, scaled: dict[int, Path]) -> pd.DataFrame:
    """One row per (claim, factor) for the claims that fail or are inconclusive at the default with a test."""
    base = {r["claim_id"]: r for r in read_claims(default)}
    chosen = [c for c, r in base.items() if r["verdict"] != "holds" and r["test"] in TESTED]
    rows = []
    for factor, path in sorted({1: default, **scaled}.items()):
        found = {r["claim_id"]: r for r in read_claims(path)}
        for claim_id in chosen:
            r = found.get(claim_id)
            if r is None or r["ours_mean"] is None:
                continue
            low, high = r["ours_ci95"] or (None, None)
            rows.append({"claim_id": claim_id, "factor": factor, "ours_mean": r["ours_mean"], "ci_low": low,
                         "ci_high": high, "n_seeds": r["n_seeds"], "verdict": r["verdict"],
                         "paper_value": base[claim_id]["paper_value"], "threshold": base[claim_id]["threshold"],
                         "test": base[claim_id]["test"]})
    return pd.DataFrame(rows, columns=["claim_id", "factor", "ours_mean", "ci_low", "ci_high", "n_seeds", "verdict",
                                       "paper_value", "threshold", "test"])


def trend_plot(table: pd.DataFrame, stage: str, out: Path) -> Path | None:
    """Small multiples, one panel per claim: mean and CI against the scale factor (log2 axis), the
    threshold dashed (equivalence: the +-margin band), the paper's value as a blue line."""
    from repro.common.io import atomic_savefig
    from repro.report.figures import PAPER_COLOUR, VERDICT_COLOURS, apply_style, plt

    if table.empty:
        return None
    apply_style()
    claims = list(dict.fromkeys(table["claim_id"]))
    cols = min(3, len(claims))
    nrows = (len(claims) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.6 * nrows + 0.4), squeeze=False)
    for ax, claim_id in zip(axes.flat, claims):
        rows = table[table["claim_id"] == claim_id]
        first = rows.iloc[0]
        for _, r in rows.iterrows():
            err = None if pd.isna(r["ci_low"]) else [[r["ours_mean"] - r["ci_low"]], [r["ci_high"] - r["ours_mean"]]]
            ax.errorbar([r["factor"]], [r["ours_mean"]], yerr=err, fmt="o", capsize=3,
                        color=VERDICT_COLOURS.get(r["verdict"], "#9e9e9e"))
        ax.plot(rows["factor"], rows["ours_mean"], color="#777", lw=0.8)
        thr = float(first["threshold"])
        if first["test"] == "equivalence":
            ax.axhspan(-thr, thr, color="#cfd8dc", alpha=0.6, lw=0)
        else:
            ax.axhline(thr, color="#555", ls="--", lw=1)
        if pd.notna(first["paper_value"]):
            ax.axhline(float(first["paper_value"]), color=PAPER_COLOUR, lw=1.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(rows["factor"].unique()), [f"{f}x" for f in sorted(rows["factor"].unique())])
        ax.set_title(claim_id[:50], fontsize=8)
    for ax in list(axes.flat)[len(claims):]:
        ax.axis("off")
    title = (f"{stage}: claims failing or inconclusive at 1x (this config), at 1x / 2x / 4x its data and steps "
             "(dashed: threshold, blue: paper; colour = verdict at that scale)")
    fig.suptitle(textwrap.fill(title, width=int(15 * 3.6 * cols)), fontsize=8.5)  # ~15 characters an inch
    fig.tight_layout()
    return atomic_savefig(fig, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro.report.trend", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    cfg = sub.add_parser("config", help="the default config with one stage scaled by k (YAML)")
    cfg.add_argument("--config", type=json.loads, required=True, help="the whole config as JSON")
    cfg.add_argument("--stage", required=True, help=f"a claims file's stem: one of {sorted(SCALED)}, or "
                     "ti_transfer_<data set>")
    cfg.add_argument("--factor", type=int, required=True)
    cfg.add_argument("--out", type=Path, required=True)
    plot = sub.add_parser("plot", help="the trend of the default's failing and inconclusive claims")
    plot.add_argument("--stage", required=True)
    plot.add_argument("--default", type=Path, required=True, help="the default run's claims file")
    plot.add_argument("--scaled", nargs="+", required=True, help="FACTOR=claims file of that run")
    plot.add_argument("--out-png", type=Path, required=True)
    plot.add_argument("--out-csv", type=Path, required=True)
    merge = sub.add_parser("merge", help="every stage's trend table in one CSV (column 'stage')")
    merge.add_argument("--in", dest="inputs", nargs="+", type=Path, required=True, help="<stage>/trend.csv files")
    merge.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "config":
        import yaml

        atomic_write_bytes(args.out, yaml.safe_dump(scaled_config(args.config, args.stage, args.factor)).encode())
        return 0
    if args.cmd == "merge":
        tables = [pd.read_csv(p).assign(stage=p.parent.name) for p in args.inputs]
        atomic_write_bytes(args.out, pd.concat(tables, ignore_index=True).to_csv(index=False).encode())
        return 0
    scaled = {int(f): Path(p) for f, p in (s.split("=", 1) for s in args.scaled)}
    table = trend_table(args.default, scaled)
    atomic_write_bytes(args.out_csv, table.to_csv(index=False).encode())
    if trend_plot(table, args.stage, args.out_png) is None:  # nothing fails: an empty figure says so
        from repro.common.io import atomic_savefig
        from repro.report.figures import plt

        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, f"{args.stage}: every tested claim holds at the default", ha="center")
        atomic_savefig(fig, args.out_png)
    print(f"[repro.report.trend] {args.stage}: {table['claim_id'].nunique()} claims -> {args.out_png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from repro.common.cli import run_cli

    sys.exit(run_cli(main, prog="python -m repro.report.trend"))

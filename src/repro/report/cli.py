"""``python -m repro.report``: claims files + figures + benchmark TSVs -> claims.csv and index.html."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

from repro.common.cli import add_common_args, start
from repro.common.config import check_config
from repro.common.io import atomic_write_bytes
from repro.common.provenance import provenance_record, write_provenance
from repro.report.collect import collect_claims, stage_wall_times, verdict_summary
from repro.report.figures import forest_plot
from repro.report.html import render
from repro.report.price import load_bench, price_html
from repro.report.readme import results_table


def get_args_parser() -> argparse.ArgumentParser:
    parser = add_common_args(argparse.ArgumentParser(prog="python -m repro.report", description=__doc__), seed=False,
                             threads=False)
    parser.add_argument("--claims", nargs="*", type=Path, default=[], help="results/claims/<stage>.json files")
    parser.add_argument("--figures", nargs="*", type=Path, default=[], help="stage figures (PNG/SVG) to embed")
    parser.add_argument("--benchmarks", type=Path, help="Snakemake benchmark folder (wall time per stage)")
    parser.add_argument("--bench-gpu", type=Path, help="results/bench_gpu.json, if measured (prices the run)")
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-html", type=Path, required=True)
    parser.add_argument("--out-summary", type=Path, help="the README's results table (Markdown)")
    parser.add_argument("--trend-dir", type=Path, help="scale_trend's folder: its */trend.png are embedded if present")
    return parser


def _stage_of(figure: Path) -> str:
    """results/<stage>/... -> <stage>."""
    parts = figure.parts
    return parts[parts.index("results") + 1] if "results" in parts[:-1] else figure.parent.name


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, None)
    check_config(args.config, "")  # the whole run's config, checked, not completed: stages it lacks stay out
    missing = [str(p) for p in [*args.claims, *args.figures] if not p.exists()]
    if missing:
        raise FileNotFoundError(f"repro.report: missing input files: {', '.join(missing)}")
    claims = collect_claims(args.claims)
    summary = verdict_summary(claims)
    fig_dir = args.out_html.parent / "figures"
    overview = {}
    for paper in summary["paper"]:
        path = forest_plot(claims, paper, fig_dir / f"forest_{paper}.png")
        if path is not None:
            overview[paper] = path
    stage_figures: dict[str, list[Path]] = defaultdict(list)
    for fig in args.figures:
        stage_figures[_stage_of(fig)].append(fig)
    wall = stage_wall_times(args.benchmarks)
    prov = provenance_record(args.config, None, started=args.started, stage="report")
    prov["scale"] = args.config.get("scale")
    prov["config_sha256"] = hashlib.sha256(json.dumps(args.config, sort_keys=True).encode()).hexdigest()[:16]
    table = claims.copy()
    table["ours_ci95"] = table["ours_ci95"].map(lambda ci: json.dumps(ci) if ci is not None else "")
    table["n_needed"] = table["n_needed"].astype("Int64")
    args.out_csv.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out_csv, table.to_csv(index=False).encode())
    trend = sorted(args.trend_dir.glob("*/trend.png")) if args.trend_dir is not None else []
    page = render(claims, summary, overview, dict(stage_figures), prov, wall, trend_figures=trend)
    price = price_html(args.config, load_bench(args.bench_gpu))  # GPU-hours of this config, before Provenance
    page = page.replace("<h2>Provenance</h2>", price + "<h2>Provenance</h2>", 1)
    atomic_write_bytes(args.out_html, page.encode())
    write_provenance(args.out_html, args.config, None, started=args.started, stage="report")
    if args.out_summary is not None:
        md = results_table(summary, scale=str(prov["scale"]), commit=str(prov.get("git_commit")),
                           date=str(prov.get("finished"))[:10])
        atomic_write_bytes(args.out_summary, md.encode())
    print(f"[repro.report] {len(claims)} claims from {len(args.claims)} files -> {args.out_html}", file=sys.stderr)
    return 0

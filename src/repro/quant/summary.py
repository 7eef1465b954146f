"""Aggregate the per-seed sweeps: summary JSON, claims file, figures and the Table 1-style CSV."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from repro.common.claims import ClaimRow, ci95, write_claims
from repro.common.io import atomic_write_bytes, atomic_write_json, read_json
from repro.common.paper_values import paper_value
from repro.common.provenance import provenance_record, write_provenance
from repro.quant import analysis as A
from repro.quant.claims import PAPER_ROWS, claim_rows, headline_order, table_values
from repro.quant.figures import plot_net

TABLE_COLUMNS = ("pruned", "kmeans", "hw_kmeans", "uniform", "ecsq", "deep_compression")


def _fmt(vals: list[float]) -> str:
    """'mean [CI]' over the finite values, '(n=...)' when some nets had no qualifying point."""
    mean, ci = ci95(vals)
    if mean is None:
        return "n/a"
    n_ok = sum(1 for v in vals if math.isfinite(v))
    return (f"{mean:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            + (f" (n={n_ok})" if n_ok < len(vals) else ""))


def write_table(path: Path, nets: list[str], cfg: dict, by_net: dict[str, list[dict]]) -> dict:
    header = ["row", "source", "accuracy_%"] + list(TABLE_COLUMNS)
    lines, numbers = [], {}
    for net in nets:
        res = by_net[net]
        cells = [table_values(r, cfg) for r in res]
        numbers[net] = {c: [cell.get(c, math.nan) for cell in cells] for c in TABLE_COLUMNS}
        acc = [r["dense"]["acc"] for r in res]
        lines.append([net, f"ours, mean [95% CI] over {len(res)} nets", _fmt(acc)]
                     + [_fmt(numbers[net][c]) if c != "deep_compression" else "not run" for c in TABLE_COLUMNS])
    for key, label in PAPER_ROWS.items():
        row = [label, "paper Table 1", ""]
        for c in TABLE_COLUMNS:
            try:
                row.append(f"{paper_value(f'quant_table1_{key}_{c}')['value']:.2f}")
            except KeyError:
                row.append("-")
        lines.append(row)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(lines)
    atomic_write_bytes(path, buf.getvalue().encode())
    return numbers


def aggregate(cfg: dict, paths: list[Path], *, summary: Path, claims: Path, figures: list[Path], table: Path,
              started: str) -> None:
    results = [read_json(p) for p in paths]
    for p, r in zip(paths, results):
        if not isinstance(r, dict) or "net" not in r or "sweeps" not in r:
            raise ValueError(f"aggregate: {p} is not a quant run result")
    rule_order = sorted(n for n, spec in cfg["nets"].items() if spec["enabled"])  # the rule's order of --figure
    if len(figures) != len(rule_order):
        raise ValueError(f"aggregate: {len(figures)} figure paths for {len(rule_order)} enabled nets {rule_order}")
    figure_of = dict(zip(rule_order, figures))
    nets = headline_order(cfg["nets"])
    by_net = {n: sorted((r for r in results if r["net"] == n), key=lambda r: r["seed"]) for n in nets}
    missing = [n for n in nets if not by_net[n]]
    if missing:
        raise ValueError(f"aggregate: no run results for enabled nets {missing}")
    rows: list[ClaimRow] = []
    out = {"nets": {}}
    for i, net in enumerate(nets):
        res = by_net[net]
        net_rows, values = claim_rows(net, cfg["nets"][net], res, cfg, first=(i == 0))
        rows += net_rows
        plot_net(figure_of[net], net, res, cfg)
        ft = bool(cfg["finetune"]["enabled"])
        out["nets"][net] = {
            "seeds": [r["seed"] for r in res],
            "unquantized_acc": [r["dense"]["acc"] for r in res],
            "unquantized_ce": [r["dense"]["ce"] for r in res],
            "pruned_acc": [r["pruned"]["acc"] for r in res if "pruned" in r],
            "spearman_exact_adam": [r["dense"]["hessian"]["spearman_exact_adam"] for r in res],
            "spearman_exact_small": [r["dense"]["hessian"].get("spearman_exact_small") for r in res],
            "max_gap_to_optimum": [A.max_gap_to_optimum([x for recs in r["sweeps"].values() for x in recs]) for r in res],
            "hessian_seconds": [r["dense"]["hessian"]["seconds"] for r in res],
            "timings": [r["timings"] for r in res],
            "claim_values": values,
            "curves": {sweep: A.curves(res, sweep, ft) for sweep in res[0]["sweeps"]},
        }
    out["table1"] = write_table(table, nets, cfg, by_net)
    out["claims"] = [r.__dict__ for r in rows]
    out["provenance"] = provenance_record(cfg, None, started=started, stage="quant")
    write_claims(claims, rows)
    for path in [table, *figures]:  # (no sidecar in results/claims/: every .json there is a claims list)
        write_provenance(path, cfg, None, started=started, stage="quant")
    atomic_write_json(summary, out)

"""Aggregate the per-seed sweeps: summary JSON, claims, Fig. 1-style figure, Table 1-style CSV.

Claims are paired per net (seed) and averaged over k-means seedings and rates
(:mod:`repro.quant.analysis`); the CI is Student's t over nets. ``fixed_bits`` and
``huffman_rates`` (config ``quant.claims``) fix where the curves are compared.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from repro.common.claims import ClaimRow, ci95, verdict_from_ci, write_claims
from repro.common.io import atomic_write_bytes, atomic_write_json, read_json
from repro.common.paper_values import paper_value
from repro.common.provenance import provenance_record, write_provenance
from repro.quant import analysis as A

METHOD_LABELS = {
    "kmeans": "k-means",
    "hw_kmeans": "Hessian-weighted k-means",
    "hw_kmeans_adam": "HW k-means (Adam)",
    "uniform": "uniform",
    "ecsq": "iterative ECSQ",
}
TABLE_COLUMNS = ("pruned", "kmeans", "hw_kmeans", "uniform", "ecsq", "deep_compression")
PAPER_ROWS = {"lenet": "LeNet (MNIST)", "resnet32": "ResNet-32 (CIFAR-10)", "alexnet": "AlexNet (ImageNet)"}


def _per_seed_values(res: dict, cfg: dict) -> dict[str, float]:
    """Every claim's per-net value (NaN where the method or fine-tuning is disabled)."""
    bits = [int(b) for b in cfg["claims"]["fixed_bits"]]
    rates = [float(r) for r in cfg["claims"]["huffman_rates"]]
    dense = res["sweeps"]["dense"]
    methods = set(cfg["methods"])
    ft = bool(cfg["finetune"]["enabled"])
    nan = math.nan
    out = {
        "quant_fixed_hw_beats_kmeans": A.fixed_diff(dense, "kmeans", "hw_kmeans", bits)
        if {"kmeans", "hw_kmeans"} <= methods else nan,
        "quant_fixed_hw_beats_kmeans_ft": A.fixed_diff(dense, "kmeans", "hw_kmeans", bits, finetuned=True)
        if ft and {"kmeans", "hw_kmeans"} <= methods else nan,
        "quant_adam_hessian_equivalent": A.fixed_diff(dense, "hw_kmeans_adam", "hw_kmeans", bits)
        if {"hw_kmeans_adam", "hw_kmeans"} <= methods else nan,
        "quant_adam_hw_beats_kmeans": A.fixed_diff(dense, "kmeans", "hw_kmeans_adam", bits)
        if {"hw_kmeans_adam", "kmeans"} <= methods else nan,
    }
    for m in ("uniform", "ecsq"):
        ok = m in methods and {"kmeans", "hw_kmeans"} <= methods
        out[f"quant_huffman_{m}_beats_kmeans"] = A.huffman_gain_over_kmeans(dense, m, rates) if ok else nan
        out[f"quant_fixed_{m}_worse"] = A.fixed_pointwise_diff(dense, m, "hw_kmeans") if ok else nan
    tab = table_values(res, cfg)
    km = max((v for v in (tab.get("kmeans", nan), tab.get("hw_kmeans", nan)) if math.isfinite(v)), default=nan)
    out["quant_table1_uniform_best_cr"] = tab.get("uniform", nan) / km if km > 0 else nan
    return out


def table_values(res: dict, cfg: dict) -> dict[str, float]:
    """Table 1 cells of one net: the largest CR at accuracy within tolerance of the unpruned net."""
    sweep = "pruned" if "pruned" in res["sweeps"] else "dense"
    recs = res["sweeps"][sweep]
    tol = float(cfg["table"]["accuracy_tolerance"])
    ref = float(res["dense"]["acc"])
    ft = bool(cfg["finetune"]["enabled"])
    out = {m: A.best_ratio(recs, m, ref, tol, finetuned=ft) for m in cfg["methods"]}
    if sweep == "pruned":
        ok = res["pruned"]["acc"] >= ref - tol - 1e-9
        out["pruned"] = res["pruned"]["cr_pruned_only"] if ok else math.nan
    return out


CLAIM_SPECS = {
    # claim_id: (metric text, higher_is_better, threshold)
    "quant_fixed_hw_beats_kmeans": ("test CE(k-means) - CE(HW k-means), fixed-length, mean over b in {bits}", True, 0.0),
    "quant_fixed_hw_beats_kmeans_ft": ("as above after fine-tuning the shared values", True, 0.0),
    "quant_huffman_uniform_beats_kmeans": ("min(CE k-means, CE HW k-means) - CE(uniform) at Huffman rates {rates}", True, 0.0),
    "quant_huffman_ecsq_beats_kmeans": ("min(CE k-means, CE HW k-means) - CE(ECSQ) at Huffman rates {rates}", True, 0.0),
    "quant_fixed_uniform_worse": ("CE(uniform point, k levels) - CE(HW k-means, 2^ceil(log2 k)), same fixed-length code, mean over the sweep", True, 0.0),
    "quant_fixed_ecsq_worse": ("CE(ECSQ point, k clusters) - CE(HW k-means, 2^ceil(log2 k)), same fixed-length code, mean over the sweep", True, 0.0),
    "quant_adam_hessian_equivalent": ("CE(HW k-means, Adam) - CE(HW k-means, exact), b in {bits}; holds if the CI is inside +-{margin}", None, 0.0),
    "quant_adam_hw_beats_kmeans": ("CE(k-means) - CE(HW k-means, Adam), fixed-length, b in {bits}", True, 0.0),
    "quant_table1_uniform_best_cr": ("CR(uniform) / max(CR k-means, CR HW k-means) at accuracy >= unpruned - {tol} pp", True, 1.0),
}


def _second_order_note(res: list[dict], cfg: dict) -> str:
    """ECSQ vs uniform at the claim's target entropies: second-order loss estimate vs actual CE."""
    if not {"ecsq", "uniform"} <= set(cfg["methods"]):
        return ""
    rates = cfg["claims"]["huffman_rates"]
    checks = [A.proxy_check(r["sweeps"]["dense"], r["dense"]["ce"], "ecsq", "uniform", rates) for r in res]
    ratio = A.finite_mean([c[0] for c in checks])
    diff = A.finite_mean([c[1] for c in checks])
    if not (math.isfinite(ratio) and math.isfinite(diff)):
        return ""
    verdict = " - the diagonal second-order model mispredicts the loss here." if ratio < 1 and diff > 0 else "."
    return (f" Second-order check (Sec. 3.1, delta L ~ 1/2 D_h) at target entropies {rates}: ECSQ's 1/2 D_h is "
            f"{ratio:.2f}x uniform's while its test-CE increase differs by {diff:+.3f} nats{verdict}")


def _scale_note(net: str, spec: dict, res: list[dict], cfg: dict, vals: list[float], claim_id: str) -> str:
    n_ok = sum(1 for v in vals if math.isfinite(v))
    thr = CLAIM_SPECS[claim_id][2]
    if claim_id == "quant_adam_hessian_equivalent":
        m = float(cfg["claims"]["equivalence_margin"])
        sign = f"|diff| <= {m} in {sum(1 for v in vals if math.isfinite(v) and abs(v) <= m)}/{n_ok} nets"
    else:
        sign = f"claimed sign in {sum(1 for v in vals if math.isfinite(v) and v > thr)}/{n_ok} nets"
    acc = np.mean([r["dense"]["acc"] for r in res])
    n_q = res[0]["dense"]["n_quantized"]
    inits = int(cfg["kmeans"]["inits"])
    note = (f"{net}: {spec['model']} on {spec['dataset']} ({n_q} parameters quantized together, unquantized test acc "
            f"{acc:.2f}%), {len(res)} nets x {inits} k-means++ seedings, paired; {sign}. Test CE is the measure "
            f"(the test set is small). Hessian: {cfg['hessian']['method']} diagonal (exact for these piecewise-linear "
            f"nets) over {cfg['hessian']['n_samples']} training samples, floored at {cfg['hessian']['floor']} x mean; "
            f"Adam: sqrt(v_hat). Uniform/ECSQ centres are Hessian-weighted means; rates are matched on the operational "
            f"curve (running minimum, linear interpolation).")
    if claim_id == "quant_huffman_ecsq_beats_kmeans":
        note += _second_order_note(res, cfg)
    if claim_id.startswith("quant_table1"):
        note += (f" Table 1 here: {'magnitude-pruned ' + str(spec['prune_fraction']) + ' + Adam retraining, ' if cfg['prune']['enabled'] else 'no pruning, '}"
                 f"Huffman codes, {'fine-tuned centres' if cfg['finetune']['enabled'] else 'no fine-tuning'}; the paper's "
                 f"value is LeNet's 51.25/47.16 (paper nets are 25x larger, so absolute CRs are not comparable).")
    if claim_id.endswith("_ft"):
        ft = cfg["finetune"]
        note += f" Fine-tuning: {ft['epochs']} epochs, {ft['optimizer']} lr {ft['lr']}, centre gradient = {ft['reduce']} of members'."
    return note


def claim_rows(net: str, spec: dict, res: list[dict], cfg: dict, first: bool) -> tuple[list[ClaimRow], dict]:
    per = [_per_seed_values(r, cfg) for r in res]
    rows, values = [], {}
    fmt = {"bits": cfg["claims"]["fixed_bits"], "rates": cfg["claims"]["huffman_rates"],
           "margin": cfg["claims"]["equivalence_margin"], "tol": cfg["table"]["accuracy_tolerance"]}
    for cid, (metric, higher, thr) in CLAIM_SPECS.items():
        vals = [p[cid] for p in per]
        values[cid] = vals
        if not any(math.isfinite(v) for v in vals):
            continue  # method or fine-tuning disabled
        mean, ci = ci95(vals)
        if higher is None:
            verdict = A.equivalence_verdict(ci, float(cfg["claims"]["equivalence_margin"]))
        else:
            verdict = verdict_from_ci(ci, threshold=thr, higher_is_better=higher)
        pv = paper_value(cid)
        rows.append(ClaimRow(
            paper=str(pv["paper"]), claim_id=cid if first else f"{cid}@{net}", claim=pv["claim"],
            metric=f"{net}: " + metric.format(**fmt), paper_value=pv["value"], ours_mean=mean, ours_ci95=ci,
            n_seeds=sum(1 for v in vals if math.isfinite(v)), verdict=verdict,
            scale_note=_scale_note(net, spec, res, cfg, vals, cid),
        ))
    return rows, values


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


def plot_net(path: Path, net: str, res: list[dict], cfg: dict) -> None:
    """Paper Fig. 1 layout: accuracy / test CE vs fixed-length bits and vs Huffman average length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ft = bool(cfg["finetune"]["enabled"])
    lines = A.curves(res, "dense", ft)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    colours = dict(zip(METHOD_LABELS, ["tab:blue", "tab:red", "tab:orange", "tab:green", "tab:purple"]))
    base_acc = float(np.mean([r["dense"]["acc"] for r in res]))
    base_ce = float(np.mean([r["dense"]["ce"] for r in res]))
    for col, xkey in enumerate(("bits_fixed", "bits_huffman")):
        for row, metric in enumerate(("acc", "ce")):
            ax = axes[row, col]
            for method, pts in lines.items():
                pts = sorted(pts, key=lambda p: p[xkey])
                xs = [p[xkey] for p in pts]
                ax.plot(xs, [p[metric] for p in pts], "-o", ms=3, color=colours[method], label=METHOD_LABELS[method])
                if ft:
                    ax.plot(xs, [p[f"{metric}_ft"] for p in pts], "--", color=colours[method], alpha=0.7,
                            label=f"{METHOD_LABELS[method]} + fine-tuning")
            ax.axhline(base_acc if metric == "acc" else base_ce, color="k", lw=0.8, ls=":", label="unquantized")
            ax.grid(alpha=0.3)
            if metric == "ce":
                ax.set_yscale("log")
                ax.set_xlabel("fixed-length code bits ceil(log2 k)" if col == 0 else "Huffman average codeword length (bits)")
            ax.set_ylabel("test accuracy (%)" if metric == "acc" else "test cross-entropy (nats)")
            if metric == "acc":
                ax.set_ylim(max(0.0, base_acc - 40), min(100.0, base_acc + 3))
                ax.set_title(("(a) fixed-length codes" if col == 0 else "(b) Huffman codes") + f" - {net}")
            ax.set_xlim(0.5, 6.5)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Quantization of all layers together, mean over {len(res)} nets "
                 f"(x {cfg['kmeans']['inits']} k-means seedings)", fontsize=11)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "svg")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def aggregate(cfg: dict, paths: list[Path], *, summary: Path, claims: Path, figures: list[Path], table: Path,
              started: str) -> None:
    results = [read_json(p) for p in paths]
    for p, r in zip(paths, results):
        if not isinstance(r, dict) or "net" not in r or "sweeps" not in r:
            raise ValueError(f"aggregate: {p} is not a quant run result")
    nets = sorted(n for n, spec in cfg["nets"].items() if spec["enabled"])  # the rule's order of --figure
    if len(figures) != len(nets):
        raise ValueError(f"aggregate: {len(figures)} figure paths for {len(nets)} enabled nets {nets}")
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
        plot_net(figures[i], net, res, cfg)
        ft = bool(cfg["finetune"]["enabled"])
        out["nets"][net] = {
            "seeds": [r["seed"] for r in res],
            "unquantized_acc": [r["dense"]["acc"] for r in res],
            "unquantized_ce": [r["dense"]["ce"] for r in res],
            "pruned_acc": [r["pruned"]["acc"] for r in res if "pruned" in r],
            "spearman_exact_adam": [r["dense"]["hessian"]["spearman_exact_adam"] for r in res],
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

"""Paired comparisons over nets (seeds) and k-means seedings: the numbers behind the claims.

Every comparison is paired: the same trained net, the same k-means seeding (``init``) for k-means
and Hessian-weighted k-means, the same rate. A per-net value is the mean over seedings and rates;
the claim's CI is Student's t over nets (``repro.common.claims.ci95``).

* Fixed-length codes (paper Fig. 1a): k-means variants at k = 2^b clusters are compared at b bits.
  Each uniform/ECSQ point (k clusters) is compared with HW k-means at 2^ceil(log2 k) clusters, the
  same fixed-length code: the curves of Fig. 1a read at the same abscissa.
* Huffman codes (Fig. 1b): each method's operational curve "best test CE reachable with an average
  codeword length <= R" (the running minimum over its points sorted by Huffman length, linearly
  interpolated between them) is read at the configured rates R; rates outside a curve are skipped.
* Table 1: the largest compression ratio whose test accuracy (after fine-tuning when enabled) is
  within ``accuracy_tolerance`` percentage points of the unquantized, unpruned net's accuracy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import numpy as np

METHOD_LABELS = {
    "kmeans": "k-means",
    "hw_kmeans": "Hessian-weighted k-means",
    "hw_kmeans_adam": "HW k-means (Adam)",
    "hw_kmeans_small": "HW k-means (small-sample Hessian)",
    "uniform": "uniform",
    "ecsq": "iterative ECSQ",
}
KMEANS_VARIANTS = ("kmeans", "hw_kmeans", "hw_kmeans_adam", "hw_kmeans_small")


def select(records: Iterable[dict], **match) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def _value(r: dict, metric: str, finetuned: bool) -> float:
    key = f"{metric}_ft" if finetuned else metric
    if key not in r:
        raise KeyError(f"record has no {key!r} (fine-tuning disabled?)")
    return float(r[key])


def fixed_length_point(records: list[dict], method: str, bits: int, init: int, metric: str, finetuned: bool) -> float:
    """A k-means variant's metric with k = 2^bits clusters (NaN if the sweep has no such k)."""
    if method not in KMEANS_VARIANTS:
        raise ValueError(f"fixed_length_point: {method!r} is not a k-means variant")
    hit = select(records, method=method, init=init, target=2**bits)
    return _value(hit[0], metric, finetuned) if hit else math.nan


def operational_curve(points: list[tuple[float, float]], rate: float) -> float:
    """Best value reachable with average length <= ``rate``: running minimum, linear in between."""
    if not points:
        return math.nan
    pts = sorted(points)
    xs = np.array([p[0] for p in pts])
    ys = np.minimum.accumulate(np.array([p[1] for p in pts]))
    if rate < xs[0] - 1e-12 or rate > xs[-1] + 1e-12:
        return math.nan
    return float(np.interp(rate, xs, ys))


def huffman_point(records: list[dict], method: str, rate: float, init: int | None, metric: str, finetuned: bool) -> float:
    match = {"method": method} if init is None else {"method": method, "init": init}
    pts = [(float(r["bits_huffman"]), _value(r, metric, finetuned)) for r in select(records, **match)]
    return operational_curve(pts, rate)


def inits_of(records: list[dict], finetuned: bool = False) -> list[int]:
    """The k-means seedings present (with fine-tuned results, if ``finetuned``)."""
    return sorted({int(r["init"]) for r in records if r["method"] in KMEANS_VARIANTS
                   and (not finetuned or "ce_ft" in r)})


def finite_mean(vals: list[float]) -> float:
    """Mean of the finite values (NaN if there are none)."""
    arr = np.array(vals, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def fixed_diff(records: list[dict], worse: str, better: str, bits: list[int], *, metric: str = "ce",
               finetuned: bool = False) -> float:
    """Per-net mean over seedings and bits of metric(worse) - metric(better) with fixed-length codes."""
    vals = []
    for r in inits_of(records, finetuned):
        for b in bits:
            vals.append(fixed_length_point(records, worse, b, r, metric, finetuned)
                        - fixed_length_point(records, better, b, r, metric, finetuned))
    return finite_mean(vals)


def fixed_pointwise_diff(records: list[dict], method: str, ref: str = "hw_kmeans", *, metric: str = "ce",
                         finetuned: bool = False) -> float:
    """Fig. 1a read point by point: every sweep point of ``method`` (uniform/ECSQ) against ``ref`` with
    the same fixed-length code, k = 2^ceil(log2 k_method) clusters; mean of metric(method) - metric(ref)
    over the points whose bits the k-means sweep covers (and over seedings)."""
    vals = []
    for p in select(records, method=method):
        b = int(p["bits_fixed"])
        refs = [fixed_length_point(records, ref, b, r, metric, finetuned) for r in inits_of(records, finetuned)]
        ref_val = finite_mean(refs)
        if math.isfinite(ref_val):
            vals.append(_value(p, metric, finetuned) - ref_val)
    return finite_mean(vals)


def huffman_gain_over_kmeans(records: list[dict], method: str, rates: list[float], *, metric: str = "ce",
                             finetuned: bool = False) -> float:
    """Per-net mean over seedings and rates of min(k-means, HW k-means) - ``method`` at equal Huffman rate."""
    vals = []
    for r in inits_of(records, finetuned):
        for rate in rates:
            km = [huffman_point(records, m, rate, r, metric, finetuned) for m in ("kmeans", "hw_kmeans")]
            best_km = min((v for v in km if math.isfinite(v)), default=math.nan)
            vals.append(best_km - huffman_point(records, method, rate, None, metric, finetuned))
    return finite_mean(vals)


def best_ratio(records: list[dict], method: str, ref_acc: float, tol: float, *, finetuned: bool, code: str = "huffman") -> float:
    """Table 1: largest CR of ``method`` whose accuracy is >= ref_acc - tol (NaN if none is)."""
    recs = [r for r in select(records, method=method) if not finetuned or "acc_ft" in r]  # fine-tuned seedings only
    ok = [float(r[f"cr_{code}"]) for r in recs if _value(r, "acc", finetuned) >= ref_acc - tol - 1e-9]
    return max(ok, default=math.nan)


def max_spacing(records: list[dict], method: str, lo: float, hi: float) -> float:
    """Widest gap (bits) between neighbouring Huffman lengths of ``method``'s points (first seeding) that
    the operational curve interpolates across on [lo, hi]; NaN if the points do not span [lo, hi]."""
    init = min((int(r["init"]) for r in select(records, method=method)), default=0)
    xs = np.sort([float(r["bits_huffman"]) for r in select(records, method=method, init=init)])
    if xs.size == 0 or xs[0] > lo + 1e-12 or xs[-1] < hi - 1e-12:
        return math.nan
    i0 = max(int(np.searchsorted(xs, lo, side="right")) - 1, 0)
    i1 = min(int(np.searchsorted(xs, hi, side="left")), xs.size - 1)
    return float(np.max(np.diff(xs[i0 : i1 + 1]))) if i1 > i0 else 0.0


def max_gap_to_optimum(records: list[dict]) -> float:
    """Largest relative gap of a k-means record's objective above the exact optimum (0 = optimal)."""
    return max((float(r["gap_to_optimum"]) for r in records if "gap_to_optimum" in r), default=math.nan)


def curves(per_seed: list[dict], sweep: str, finetuned: bool) -> dict[str, list[dict]]:
    """Mean (over nets and seedings) of bits and metrics per method and target: the figure's lines."""
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for res in per_seed:
        for r in res["sweeps"].get(sweep, []):
            groups[(r["method"], float(r["target"]))].append(r)
    out: dict[str, list[dict]] = defaultdict(list)
    for (method, target), rs in sorted(groups.items()):
        row = {"target": target, "n": len(rs)}
        for key in ("bits_fixed", "bits_huffman", "entropy", "k", "cr_fixed", "cr_huffman", "acc", "ce"):
            row[key] = float(np.mean([r[key] for r in rs]))
        tuned = [r for r in rs if "acc_ft" in r]  # fine-tuning may cover only the first seedings
        if finetuned and tuned:
            row["acc_ft"] = float(np.mean([r["acc_ft"] for r in tuned]))
            row["ce_ft"] = float(np.mean([r["ce_ft"] for r in tuned]))
        out[method].append(row)
    return dict(out)


def proxy_check(records: list[dict], base_ce: float, method: str, ref: str, rates: list[float]) -> tuple[float, float]:
    """At the shared target entropies: mean ratio of the second-order loss estimate 1/2 D_h
    (``method`` / ``ref``) and mean difference of the actual test-CE increases (method - ref)."""
    ratios, diffs = [], []
    for rate in rates:
        a = select(records, method=method, target=float(rate))
        b = select(records, method=ref, target=float(rate))
        if a and b and b[0]["predicted_dloss"] > 0:
            ratios.append(a[0]["predicted_dloss"] / b[0]["predicted_dloss"])
            diffs.append((a[0]["ce"] - base_ce) - (b[0]["ce"] - base_ce))
    return finite_mean(ratios), finite_mean(diffs)


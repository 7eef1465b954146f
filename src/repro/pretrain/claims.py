"""Summary over seeds and the claims rows of the pretraining stage (arXiv 1708.02901, Table 1 analogue).

The paper's evidence is detection transfer: VOC07 mAP 63.2 (Ours, transitive) > 60.2 (Tracking,
intra-only) > 39.7 (Scratch), Table 1, one run each. It reports no probe or kNN number. Our claims are
the same ordering read out without detection: linear-probe and kNN accuracy (%) of the frozen pooled
features on each labelled crop set (:mod:`repro.pretrain.metrics`, :mod:`repro.pretrain.data`). A
claim is a difference between two arms paired by seed (same seed = same initial weights, same crops
and folds); mean and Student-t 95% CI over seeds; verdict ``holds`` if the CI is above 0, ``fails`` if
below, else ``inconclusive``. The ordering rows hold only if both of their differences hold and fail if
either fails. The ``paper_value`` of a difference row is the paper's mAP difference (Table 1: read from
the detection stage's ``ti_transfer`` reference entries; Table 2 ablations: ``pretrain.yaml``), an
analogue, not the same metric. Claim ids: ``ti_pretrain[_det|_voc]_<metric>_<comparison>`` for the
mined / detection / VOC crops; the Table 2 ablation rows use the first source of ``eval.sources``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from repro.common.claims import ClaimRow, ci95, one_sample_test
from repro.common.paper_values import all_paper_values

__all__ = ["DIFFS", "build_claims", "claim_prefix", "summarize"]

PAPER = "1708.02901"
METRICS = ("probe", "knn", "probe_balanced", "knn_balanced")
METRIC_NAMES = {"probe": "linear-probe accuracy", "knn": "kNN accuracy"}
SOURCE_NAMES = {"mined": "mined crops (synthetic videos)", "detection": "detection-set crops",
                "voc2007": "VOC 2007 crops"}
PREFIX = {"mined": "ti_pretrain", "detection": "ti_pretrain_det", "voc2007": "ti_pretrain_voc"}
# (comparison, better arm, worse arm, reference entry of the paper's analogue difference)
DIFFS = (
    ("transitive_minus_intra", "transitive", "intra", "ti_transfer_claim_voc_transitive_minus_intra"),
    ("intra_minus_scratch", "intra", "scratch", "ti_transfer_claim_voc_intra_minus_scratch"),
    ("transitive_minus_scratch", "transitive", "scratch", "ti_transfer_claim_voc_transitive_minus_scratch"),
    ("transitive_minus_hog", "transitive", "transitive_hog", "ti_pretrain_{metric}_transitive_minus_hog"),
    ("transitive_minus_short", "transitive", "transitive_short", "ti_pretrain_{metric}_transitive_minus_short"),
)
CLAIMED = ("transitive_minus_intra", "intra_minus_scratch")  # every source (+ the ordering row)
ABLATIONS = ("transitive_minus_hog", "transitive_minus_short")  # first source only


def claim_prefix(source: str) -> str:
    return PREFIX.get(source, f"ti_pretrain_{source}")


def _stats(values: dict[int, float]) -> dict[str, Any]:
    mean, ci = ci95(list(values.values()))
    return {"by_seed": values, "mean": mean, "ci95": ci, "n": len(values)}


def _summarize_set(evals: list[dict[str, Any]], source: str) -> dict[str, Any]:
    sets = [(int(e["seed"]), e["sets"][source]) for e in evals if source in e["sets"]]
    arms = list(sets[0][1]["arms"])
    first = sets[0][1]
    out: dict[str, Any] = {"arms": {}, "diffs": {}}
    for arm in arms:
        out["arms"][arm] = {m: _stats({s: float(r["arms"][arm][m]) for s, r in sets if arm in r["arms"]})
                            for m in METRICS}
    out["reference"] = {
        "pixels_probe": _stats({s: float(r["pixels"]["probe"]) for s, r in sets}),
        "pixels_knn": _stats({s: float(r["pixels"]["knn"]) for s, r in sets}),
        **{k: first[k] for k in ("majority", "n_crops", "n_groups", "n_classes", "grouped_folds", "class_counts")},
    }
    for name, hi, lo, _ in DIFFS:
        if hi in arms and lo in arms:
            for m in METRICS:
                vals = {s: float(r["arms"][hi][m]) - float(r["arms"][lo][m]) for s, r in sets
                        if hi in r["arms"] and lo in r["arms"]}
                out["diffs"][f"{m}_{name}"] = _stats(vals)
    if {"transitive", "intra", "scratch"} <= set(arms):
        for m in ("probe", "knn"):
            ok = [float(r["arms"]["transitive"][m]) > float(r["arms"]["intra"][m]) > float(r["arms"]["scratch"][m])
                  for _, r in sets]
            out["diffs"][f"{m}_ordering_seeds"] = {"holds": int(sum(ok)), "n": len(ok)}
    return out


def summarize(evals: list[dict[str, Any]], trains: list[dict[str, Any]] | None = None,
              graph_stats: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per crop set, arm and metric: per-seed values, mean and CI; paired differences; training figures."""
    if not evals:
        raise ValueError("claims: no evaluation files")
    seeds = [int(e["seed"]) for e in evals]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"claims: duplicate seeds among the evaluations {seeds}")
    sources = list(evals[0]["sets"])
    out: dict[str, Any] = {"seeds": seeds, "sources": sources,
                           "sets": {src: _summarize_set(evals, src) for src in sources}, "train": {}, "graph": {}}
    out["untrained"] = sorted({f"{t['arm']} s{t['seed']}" for t in trains or [] if t.get("untrained")})
    for t in trains or []:
        rec = out["train"].setdefault(t["arm"], {"n_pairs": [], "steps": [], "final_loss": [], "train_seconds": []})
        for k in rec:
            if k in t:
                rec[k].append(t[k])
    for g in graph_stats or []:
        for k in ("transitive_pair_precision", "inter_edge_precision", "intra_pair_precision", "chance_same_class",
                  "n_pairs_mix", "n_intra_pairs", "n_inter_pairs", "n_transitive_pairs"):
            if g.get(k) is not None:
                out["graph"].setdefault(k, []).append(float(g[k]))
    return out


def _scale_note(summary: dict[str, Any], source: str, cfg: dict[str, Any], scale: str, extra: str) -> str:
    ref = summary["sets"][source]["reference"]
    pairs = ", ".join(f"{a} {int(np.mean(v['n_pairs']))}" for a, v in summary["train"].items() if v["n_pairs"])
    g = summary["graph"]
    graph = ""
    if g.get("transitive_pair_precision") and g.get("chance_same_class"):
        prec, chance = float(np.mean(g["transitive_pair_precision"])), float(np.mean(g["chance_same_class"]))
        verdict = ("little category signal over the tracking pairs" if prec < 2 * chance
                   else f"category signal ({prec / chance:.1f}x chance)")
        graph = f" The graph's transitive pairs are same-class at rate {prec:.2f} (chance {chance:.2f}): {verdict}."
    split = ("grouped folds, train and test never share a video" if ref["grouped_folds"]
             else "fixed train/test split by image")
    if summary.get("untrained"):
        extra += (f" NOT trained (too few pairs or a single parent cluster, so they equal scratch):"
                  f" {', '.join(summary['untrained'])}.")
    return (f"{scale} scale: backbone {cfg.get('backbone', 'tiny_resnet')} width {cfg.get('width')} (the detection"
            f" stage's), random init shared by the arms of a seed (the paper starts from a context net),"
            f" {cfg['steps']} steps of {cfg['batch']} pairs, {cfg['optimizer'].get('name', 'sgd')}"
            f" lr {cfg['optimizer'].get('lr')}, negatives {cfg['negatives']}, m ="
            f" {cfg['margin']}. Pairs per arm: {pairs or 'n/a'} (paper: 9M). Read-out: frozen pooled C5 on"
            f" {ref['n_crops']} {SOURCE_NAMES.get(source, source)}, {ref['n_classes']} classes, {split};"
            f" majority class {ref['majority']:.1f}%, raw-pixel probe {ref['pixels_probe']['mean']:.1f}% / kNN"
            f" {ref['pixels_knn']['mean']:.1f}%. Paper value: the VOC07 mAP difference after detection fine-tuning"
            f" (single runs), an analogue, not this metric.{graph}{extra} What a larger scale gives: README.md,"
            " section pretrain (4x the videos).")


def build_claims(summary: dict[str, Any], cfg: dict[str, Any], *, scale: str = "default") -> list[ClaimRow]:
    """Per crop set: transitive-intra, intra-scratch and the ordering (probe and kNN); the Table 2
    ablations on the first set when their arms ran."""
    refs = all_paper_values()
    rows: list[ClaimRow] = []
    for i, source in enumerate(summary["sources"]):
        st_set = summary["sets"][source]
        arms = st_set["arms"]
        names = CLAIMED + (ABLATIONS if i == 0 else ())
        for metric in ("probe", "knn"):
            verdicts: dict[str, str] = {}
            for name, hi, lo, ref_id in DIFFS:
                key = f"{metric}_{name}"
                if name not in names or key not in st_set["diffs"]:
                    continue
                test = one_sample_test(list(st_set["diffs"][key]["by_seed"].values()))
                verdicts[name] = test.verdict
                extra = ""
                if test.verdict == "inconclusive" and test.n_needed is not None:
                    extra = (f" At the observed spread over seeds, a decisive verdict would need about {test.n_needed}"
                             f" seeds (80% power) if the mean difference stayed {test.ours_mean:+.2f} pp.")
                prefix = "ti_pretrain" if name in ABLATIONS else claim_prefix(source)
                rows.append(ClaimRow(
                    paper=PAPER, claim_id=f"{prefix}_{key}",
                    claim=f"{hi} pretraining gives better frozen features than {lo} ({METRIC_NAMES[metric]},"
                          f" {SOURCE_NAMES.get(source, source)})",
                    metric=f"{METRIC_NAMES[metric]} difference {hi} - {lo} (pp; ours {arms[hi][metric]['mean']:.1f}%"
                           f" vs {arms[lo][metric]['mean']:.1f}%)",
                    paper_value=refs.get(ref_id.format(metric=metric), {}).get("value"),
                    scale_note=_scale_note(summary, source, cfg, scale, extra), **test.fields()))
            if all(k in verdicts for k in CLAIMED):
                vs = [verdicts[k] for k in CLAIMED]
                verdict = "holds" if all(v == "holds" for v in vs) else "fails" if "fails" in vs else "inconclusive"
                seeds = st_set["diffs"][f"{metric}_ordering_seeds"]
                means = ", ".join(f"{a} {arms[a][metric]['mean']:.1f}%" for a in ("transitive", "intra", "scratch"))
                rows.append(ClaimRow(
                    paper=PAPER, claim_id=f"{claim_prefix(source)}_{metric}_ordering",
                    claim=f"transitive > intra-only > scratch ({METRIC_NAMES[metric]}, {SOURCE_NAMES.get(source, source)};"
                          " paper Table 1: 63.2 > 60.2 > 39.7 VOC07 mAP)",
                    metric=f"fraction of seeds with transitive > intra > scratch (means: {means})",
                    paper_value=None, ours_mean=seeds["holds"] / seeds["n"], ours_ci95=None, n_seeds=seeds["n"],
                    verdict=verdict,
                    scale_note=_scale_note(summary, source, cfg, scale, " Verdict: both paired differences must hold"
                                           f" (transitive-intra: {vs[0]}, intra-scratch: {vs[1]}).")))
    return rows

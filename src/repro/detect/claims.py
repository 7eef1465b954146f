"""Claims of FPN (Tables 1 and 3, Sec. 5.2.1 running time), Mask R-CNN's RoIAlign vs RoIPool, and TI's
detection transfer (1708.02901 Tables 3 and 4).

Every claim is a signed sum of per-run metrics, such as FPN AP - C4 AP. It is computed per seed
from runs that share the seed (a paired difference), averaged over seeds, and given a Student-t
95% CI (:func:`repro.common.claims.one_sample_test`). The verdict is ``holds`` when the whole CI is above 0, ``fails`` when it is below 0, and
``inconclusive`` otherwise. With 2 seeds the t quantile is 12.7, so only large, consistent gaps
can hold. The paper's value is the same difference taken from the tables, as a fraction. The running
time is a ratio instead (FPN / C4 inference s/image, :func:`timing_row`), and 'holds' means below 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from repro.common.claims import ClaimRow, one_sample_test
from repro.common.paper_values import paper_value

Runs = Mapping[str, Mapping[int, Mapping[str, float]]]  # model/arm -> seed -> flat metrics ("bbox.AP", ...)


@dataclass(frozen=True)
class DiffClaim:
    """``sum(sign * runs[model][seed][key])`` > 0, with the paper's value from paper_values."""

    claim_id: str
    metric: str
    terms: tuple[tuple[float, str, str], ...]  # (sign, model, metric key)

    @property
    def models(self) -> set[str]:
        return {m for _, m, _ in self.terms}


def _delta(claim_id: str, metric: str, key: str, a: str, b: str) -> DiffClaim:
    return DiffClaim(claim_id, metric, ((1.0, a, key), (-1.0, b, key)))


def _small_vs_large(claim_id: str, base: str, small: str = "bbox.AP_s", large: str = "bbox.AP_l") -> DiffClaim:
    """(FPN - base on small objects) - (FPN - base on large objects) > 0."""
    s, l = small.split(".")[1], large.split(".")[1]
    return DiffClaim(
        claim_id,
        f"(FPN - {base.upper()} on {s}) - (FPN - {base.upper()} on {l}), fraction",
        ((1.0, "fpn", small), (-1.0, base, small), (-1.0, "fpn", large), (1.0, base, large)),
    )


FPN_CLAIMS: tuple[DiffClaim, ...] = (
    _delta("fpn_claim_ap_fpn_minus_c4", "COCO AP, FPN - C4 (fraction)", "bbox.AP", "fpn", "c4"),
    _delta("fpn_claim_ap50_fpn_minus_c4", "PASCAL-style AP@0.5, FPN - C4 (fraction)", "bbox.AP50", "fpn", "c4"),
    _delta("fpn_claim_ar100_fpn_minus_c4", "RPN AR100, FPN - C4 (fraction)", "rpn.AR100", "fpn", "c4"),
    _delta("fpn_claim_ar1k_c4_minus_c5", "RPN AR1k, C4 - C5 (fraction)", "rpn.AR1k", "c4", "c5"),
    _delta("fpn_claim_ap_fpn_minus_c5", "COCO AP, FPN - C5 (fraction)", "bbox.AP", "fpn", "c5"),
    _delta("fpn_claim_ap_c4_minus_c5", "COCO AP, C4 - C5 (fraction)", "bbox.AP", "c4", "c5"),
    _delta("fpn_claim_aps_fpn_minus_c4", "COCO AP_s, FPN - C4 (fraction)", "bbox.AP_s", "fpn", "c4"),
    _delta("fpn_claim_aps_fpn_minus_c5", "COCO AP_s, FPN - C5 (fraction)", "bbox.AP_s", "fpn", "c5"),
    _small_vs_large("fpn_claim_small_gain_vs_c4", "c4"),
    _small_vs_large("fpn_claim_small_gain_vs_c5", "c5"),
    _small_vs_large("fpn_claim_small_ar_gain_vs_c4", "c4", "rpn.AR1k_s", "rpn.AR1k_l"),
    _small_vs_large("fpn_claim_small_ar_gain_vs_c5", "c5", "rpn.AR1k_s", "rpn.AR1k_l"),
    _delta("fpn_claim_ar1k_fpn_minus_c4", "RPN AR1k, FPN - C4 (fraction)", "rpn.AR1k", "fpn", "c4"),
    _delta("fpn_claim_ar1k_fpn_minus_c5", "RPN AR1k, FPN - C5 (fraction)", "rpn.AR1k", "fpn", "c5"),
    _delta("fpn_claim_ar1ks_fpn_minus_c4", "RPN AR1k_s, FPN - C4 (fraction)", "rpn.AR1k_s", "fpn", "c4"),
    _delta("fpn_claim_ar1ks_fpn_minus_c5", "RPN AR1k_s, FPN - C5 (fraction)", "rpn.AR1k_s", "fpn", "c5"),
    _delta("fpn_claim_ar1k_fpn_minus_no_topdown", "RPN AR1k, FPN - bottom-up pyramid (fraction)", "rpn.AR1k",
           "fpn", "fpn_no_topdown"),
    _delta("fpn_claim_ar1k_fpn_minus_no_lateral", "RPN AR1k, FPN - no-lateral pyramid (fraction)", "rpn.AR1k",
           "fpn", "fpn_no_lateral"),
    _delta("fpn_claim_ar1k_fpn_minus_p2_only", "RPN AR1k, FPN - P2 only (fraction)", "rpn.AR1k", "fpn", "fpn_p2_only"),
    _delta("fpn_claim_ar1k_p2_only_minus_c4", "RPN AR1k, P2 only - C4 (fraction)", "rpn.AR1k", "fpn_p2_only", "c4"),
)

POOLER_CLAIM_ID = "fpn_claim_ap_roialign_minus_roipool"
TIMING_CLAIM_ID = "fpn_claim_time_fpn_over_c4"


def pooler_claim(models: Sequence[str], pooler: str) -> DiffClaim | None:
    """RoIAlign beats RoIPool (Mask R-CNN, arXiv 1703.06870 Sec. 3) on the FPN detector, in COCO AP.

    The RoIAlign arm is ``fpn_roi_align`` if it was run, else ``fpn`` when the config's pooler is
    roi_align; the RoIPool arm likewise (``fpn_roi_pool`` / ``fpn`` with roi_pool). None without both.
    """
    def arm(fixed: str, kind: str) -> str | None:
        return fixed if fixed in models else "fpn" if pooler == kind and "fpn" in models else None

    align, pool = arm("fpn_roi_align", "roi_align"), arm("fpn_roi_pool", "roi_pool")
    if align is None or pool is None:
        return None
    return _delta(POOLER_CLAIM_ID, f"COCO AP, FPN with RoIAlign ({align}) - with RoIPool ({pool}) (fraction)",
                  "bbox.AP", align, pool)


def timing_row(ratios: Mapping[int, float], *, paper: str, scale_note: str) -> ClaimRow:
    """Sec. 5.2.1 running time: FPN's inference s/image over C4's, per seed; 'holds' if the CI is below 1.

    The paper's value is the ratio of its two times, 0.148 s / 0.32 s (paper_values).
    """
    ref = paper_value(TIMING_CLAIM_ID)
    values = [float(ratios[s]) for s in sorted(ratios)]
    note = f"{scale_note} Per seed: {[round(v, 4) for v in values]}."
    if len(values) < 2:
        note += f" Only {len(values)} seed(s), so there is no CI and the verdict is inconclusive."
    return ClaimRow(paper=paper, claim_id=TIMING_CLAIM_ID, claim=ref["claim"],
                    metric="inference s/image, FPN / C4 (ratio; < 1: FPN faster)", paper_value=float(ref["value"]),
                    scale_note=note, **one_sample_test(values, threshold=1.0, higher_is_better=False).fields())

# The pretraining stage's arm names -> the paper's row names in ti_transfer.yaml.
ARM_PAPER_ROW = {
    "scratch": "scratch", "intra": "tracking", "intra_only": "tracking", "tracking": "tracking",
    "transitive": "transitive", "context": "context", "multitask": "multitask", "multi_task": "multitask",
    "imagenet": "imagenet",
}

# Which paper table each transfer data set is read beside. Our detector is a Faster R-CNN, so VOC 2007 is
# Table 3's setting (Faster R-CNN on VOC07, column "All": every layer fine-tuned), not Table 1's Fast
# R-CNN; COCO is Table 4 (Faster R-CNN, trainval35k -> minival; ours: train2017 -> val2017). The synthetic
# set has no table: it is labelled as itself and read beside Table 4, the protocol it shares (Faster
# R-CNN, COCO-style AP). data set -> (claim-id family, metric key, metric label).
TRANSFER_FAMILIES: dict[str, tuple[str, str, str]] = {
    "voc2007": ("voc07_t3", "voc_map50", "VOC 2007 test mAP@0.5"),
    "coco2017": ("coco_t4", "bbox.AP", "COCO val2017 AP"),
    "synthetic": ("synth", "bbox.AP", "synthetic detection set, COCO-style AP"),
}
# (higher row, lower row, claim name): Table 1/3/4's orderings, "Ours > Context" included.
TRANSFER_PAIRS = (("transitive", "tracking", "transitive_minus_intra"),
                  ("tracking", "scratch", "intra_minus_scratch"),
                  ("transitive", "scratch", "transitive_minus_scratch"),
                  ("transitive", "context", "transitive_minus_context"))
# "Ours close to ImageNet" (abstract: "23.5% AP on COCO ... compared to 24.4% AP by the ImageNet-supervised
# counterpart"). "Close" is not defined in the paper; we decide: transitive recovers at least 3/4 of
# ImageNet's gain over scratch, T - S >= 0.75 (I - S), i.e. T - 0.75 I - 0.25 S > 0 (Table 4: +0.075 pp,
# 3.0 of 3.9 pp = 77%).
CLOSE_SHARE = 0.75


def transfer_claims(arms: Sequence[str], dataset: str) -> tuple[DiffClaim, ...]:
    """The paper's transfer orderings on ``dataset`` (a key of :data:`TRANSFER_FAMILIES`), for the arms run."""
    if dataset not in TRANSFER_FAMILIES:
        raise ValueError(f"detect.transfer data set {dataset!r}: one of {', '.join(TRANSFER_FAMILIES)}")
    family, key, label = TRANSFER_FAMILIES[dataset]
    by_row = {ARM_PAPER_ROW.get(a): a for a in arms}
    out = []
    default_arm = {"tracking": "intra"}  # a row's arm when it was not run (claim_rows notes it missing)
    for hi, lo, name in TRANSFER_PAIRS:
        a, b = (by_row.get(r, default_arm.get(r, r)) for r in (hi, lo))
        out.append(_delta(f"ti_transfer_{family}_{name}", f"{label}, {a} - {b} (fraction)", key, a, b))
    if {"transitive", "imagenet", "scratch"} <= set(by_row) and dataset != "voc2007":  # Table 3: no scratch
        t, i, s = by_row["transitive"], by_row["imagenet"], by_row["scratch"]
        out.append(DiffClaim(f"ti_transfer_{family}_transitive_close_to_imagenet",
                             f"{label}, {t} - {CLOSE_SHARE} {i} - {1 - CLOSE_SHARE} {s} (fraction; > 0: {t} recovers"
                             f" at least {CLOSE_SHARE:.0%} of {i}'s gain over {s})",
                             ((1.0, t, key), (-CLOSE_SHARE, i, key), (CLOSE_SHARE - 1.0, s, key))))
    return tuple(out)


def per_seed_values(claim: DiffClaim, runs: Runs) -> list[float]:
    """The claim's signed sum for each seed that every model in it was run with (-1/NaN buckets skipped)."""
    seeds = set.intersection(*(set(runs.get(m, {})) for m in claim.models)) if claim.models else set()
    out = []
    for seed in sorted(seeds):
        vals = [(sign, runs[m][seed].get(key)) for sign, m, key in claim.terms]
        if any(v is None or v != v or v < 0 for _, v in vals):  # pycocotools' -1: empty size bucket
            continue
        out.append(sum(sign * v for sign, v in vals))
    return out


def _paper_fraction(ref: Mapping[str, object]) -> float | None:
    """The paper's value (a percentage in paper_values) as a fraction, as our metrics are."""
    return None if ref["value"] is None else round(float(ref["value"]) / 100.0, 6)


def not_run_row(claim_id: str, metric: str, *, paper: str, reason: str) -> ClaimRow:
    """A claim no run of this configuration stands behind: a note with the paper's value, no verdict."""
    ref = paper_value(claim_id)
    return ClaimRow(paper=paper, claim_id=claim_id, claim=ref["claim"], metric=metric, paper_value=_paper_fraction(ref),
                    ours_mean=None, ours_ci95=None, n_seeds=0, verdict="inconclusive",
                    scale_note=f"not run in this configuration: {reason}")


def claim_rows(claims: Sequence[DiffClaim], runs: Runs, *, paper: str, scale_note: str,
               config_key: str = "detect.models") -> list[ClaimRow]:
    """One ClaimRow per claim (paper value converted from % to a fraction); a claim with a model or arm
    that was not run is a :func:`not_run_row` naming it and the config list it is missing from."""
    rows = []
    for c in claims:
        missing = sorted(m for m in c.models if m not in runs)
        if missing:
            rows.append(not_run_row(c.claim_id, c.metric, paper=paper,
                                    reason=f"no {' or '.join(missing)} runs (add to {config_key} to run it)."))
            continue
        ref = paper_value(c.claim_id)
        values = per_seed_values(c, runs)
        note = f"{scale_note} Per seed: {[round(v, 4) for v in values]}."
        if len(values) < 2:
            note += f" Only {len(values)} seed(s) with all runs, so there is no CI and the verdict is inconclusive."
        if ref["value"] is None:
            note += f" The paper gives no number here ({ref['where']}): a measurement beside the paper's statement."
        rows.append(ClaimRow(paper=paper, claim_id=c.claim_id, claim=ref["claim"], metric=c.metric,
                             paper_value=_paper_fraction(ref), scale_note=note,
                             **one_sample_test(values, threshold=0.0).fields()))
    return rows

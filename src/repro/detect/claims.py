"""Claims of FPN (Tables 1 and 3, Sec. 5.2.1 running time), Mask R-CNN's RoIAlign vs RoIPool, and TI's
detection transfer (1708.02901 Tables 1 and 4).

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


def transfer_claims(arms: Sequence[str]) -> tuple[DiffClaim, ...]:
    """transitive > intra-only > scratch on VOC07 mAP@0.5 and COCO AP, for the arms that were run."""
    by_row = {ARM_PAPER_ROW.get(a): a for a in arms}
    pairs = (("transitive", "tracking", "transitive_minus_intra"), ("tracking", "scratch", "intra_minus_scratch"),
             ("transitive", "scratch", "transitive_minus_scratch"))
    out = []
    for hi, lo, name in pairs:
        if hi in by_row and lo in by_row:
            a, b = by_row[hi], by_row[lo]
            out.append(_delta(f"ti_transfer_claim_voc_{name}", f"VOC07-style mAP@0.5, {a} - {b} (fraction)",
                              "voc_map50", a, b))
            out.append(_delta(f"ti_transfer_claim_coco_{name}", f"COCO AP, {a} - {b} (fraction)", "bbox.AP", a, b))
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


def claim_rows(claims: Sequence[DiffClaim], runs: Runs, *, paper: str, scale_note: str) -> list[ClaimRow]:
    """One ClaimRow per claim whose models were all run (paper value converted from % to a fraction)."""
    rows = []
    for c in claims:
        if not all(m in runs for m in c.models):
            continue
        ref = paper_value(c.claim_id)
        values = per_seed_values(c, runs)
        note = f"{scale_note} Per seed: {[round(v, 4) for v in values]}."
        if len(values) < 2:
            note += f" Only {len(values)} seed(s) with all runs, so there is no CI and the verdict is inconclusive."
        if ref["value"] is None:
            note += f" The paper gives no number here ({ref['where']}): a measurement beside the paper's statement."
        paper_val = None if ref["value"] is None else round(float(ref["value"]) / 100.0, 6)
        rows.append(ClaimRow(paper=paper, claim_id=c.claim_id, claim=ref["claim"], metric=c.metric,
                             paper_value=paper_val, scale_note=note,
                             **one_sample_test(values, threshold=0.0).fields()))
    return rows

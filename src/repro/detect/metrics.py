"""COCO evaluation: the 12 bbox stats, RPN proposal recall, and VOC07 mAP@0.5.

The ground truth and results are pycocotools ``COCO`` objects; the matching and accumulation run in
faster-coco-eval's ``COCOeval_faster``, pycocotools' ``COCOeval`` with its per-image loop in C++. It
gives the same ``eval["precision"]``/``eval["recall"]`` arrays and the same 12 bbox stats (a test
checks both against pycocotools); the RPN's 1000 proposals per image make pycocotools' Python loop
most of an evaluation's time. The bbox run is done once and gives both the COCO stats and the VOC07
mAP@0.5.

Every value is a fraction in [0, 1]; pycocotools' -1 means the size bucket has no ground truth.
Three pycocotools quirks are handled here:

* ``COCO.loadRes`` fails on an empty result list. With no detections we return 0 for every bucket
  that has ground truth and -1 for every bucket that has none, which is what COCOeval gives for a
  detector that outputs nothing.
* Size buckets use the ground truth's ``area`` field (small < 32^2 <= medium < 96^2 <= large).
* ``stats[0]`` always uses the last maxDets, so the RPN run passes maxDets (10, 100, 1000).

RPN recall (FPN Table 1) is class-agnostic (``useCats=0``). Proposals carry no score, so the score
is their rank: torchvision's RPN returns them sorted by objectness.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

BBOX_STATS = ("AP", "AP50", "AP75", "AP_s", "AP_m", "AP_l", "AR1", "AR10", "AR100", "AR_s", "AR_m", "AR_l")
RPN_KEYS = ("AR100", "AR1k", "AR1k_s", "AR1k_m", "AR1k_l")
AREA_RANGES = ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10))  # all, s, m, l (pycocotools)
# which area range each of the 12 summary stats belongs to
_STAT_AREA = (0, 0, 0, 1, 2, 3, 0, 0, 0, 1, 2, 3)


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout; keep the logs readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def coco_from_dict(data: dict[str, Any]):
    """A pycocotools ``COCO`` object from an in-memory dict (images, annotations, categories)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = copy.deepcopy(data)
    coco.dataset.setdefault("annotations", [])
    with _quiet():
        coco.createIndex()
    return coco


def detections_to_coco(image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                       label_to_cat: Sequence[int]) -> list[dict[str, Any]]:
    """One image's detections as COCO results: ``bbox`` [x, y, w, h], ``category_id`` via the label map.

    ``label_to_cat[k]`` is the COCO category id of label k (index 0, the background, is unused).
    """
    out = []
    for (x1, y1, x2, y2), s, lab in zip(np.asarray(boxes_xyxy, float), np.asarray(scores, float), np.asarray(labels)):
        out.append({"image_id": int(image_id), "category_id": int(label_to_cat[int(lab)]),
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(s)})
    return out


def proposals_to_coco(image_id: int, boxes_xyxy: np.ndarray, category_id: int) -> list[dict[str, Any]]:
    """Ranked proposals as class-agnostic COCO results, scored 1, 1 - 1/N, ... by rank."""
    n = len(boxes_xyxy)
    scores = 1.0 - np.arange(n) / max(n, 1)
    return detections_to_coco(image_id, boxes_xyxy, scores, np.zeros(n, int), [category_id])


def _empty_result_stats(coco_gt, *, use_cats: bool) -> list[float]:
    """What COCOeval gives for no detections: 0 where a bucket has non-crowd GT, else -1."""
    cat_ids = set(coco_gt.getCatIds()) if use_cats else None
    areas = [a["area"] for a in coco_gt.dataset["annotations"]
             if not a.get("iscrowd", 0) and (cat_ids is None or a["category_id"] in cat_ids)]
    has = [any(lo <= ar <= hi for ar in areas) for lo, hi in AREA_RANGES]
    return [0.0 if has[_STAT_AREA[i]] else -1.0 for i in range(12)]


def _run_cocoeval(coco_gt, results: list[dict], *, use_cats: bool, max_dets: Sequence[int]):
    from faster_coco_eval import COCOeval_faster

    with _quiet():
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval_faster(coco_gt, coco_dt, "bbox")
        ev.params.useCats = int(use_cats)
        ev.params.maxDets = list(max_dets)
        ev.params.imgIds = sorted(coco_gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _bbox_eval(coco_gt, results: list[dict]):
    """The class-aware bbox evaluation (maxDets 1/10/100), or None for an empty result list."""
    return _run_cocoeval(coco_gt, results, use_cats=True, max_dets=(1, 10, 100)) if results else None


def _bbox_stats(coco_gt, ev) -> dict[str, float]:
    stats = _empty_result_stats(coco_gt, use_cats=True) if ev is None else [float(v) for v in ev.stats[:12]]
    return dict(zip(BBOX_STATS, stats))


def _voc07_from(coco_gt, ev) -> float:
    if ev is None:
        return 0.0 if _empty_result_stats(coco_gt, use_cats=True)[0] == 0.0 else float("nan")
    prec = ev.eval["precision"]  # T x R x K x A x M
    rec_idx = [int(np.argmin(np.abs(ev.params.recThrs - r))) for r in np.linspace(0, 1, 11)]
    p = prec[0, rec_idx, :, 0, -1]  # 11 x K (IoU 0.5, all areas, maxDets 100)
    valid = (p > -1).all(axis=0)
    if not valid.any():
        return float("nan")
    return float(p[:, valid].mean())


def evaluate_bbox(coco_gt, results: list[dict]) -> dict[str, float]:
    """The 12 ``COCOeval.stats`` (maxDets 1/10/100) as ``{"AP": ..., ..., "AR_l": ...}``."""
    return _bbox_stats(coco_gt, _bbox_eval(coco_gt, results))


def evaluate_proposals(coco_gt, results: list[dict]) -> dict[str, float]:
    """Class-agnostic proposal recall (FPN Table 1): AR at 100 and 1000 proposals, and AR1k by size."""
    if not results:
        stats = _empty_result_stats(coco_gt, use_cats=False)
    else:
        stats = [float(v) for v in _run_cocoeval(coco_gt, results, use_cats=False, max_dets=(10, 100, 1000)).stats]
    return dict(zip(RPN_KEYS, stats[7:12]))


def voc07_map50(coco_gt, results: list[dict]) -> float:
    """PASCAL VOC 2007 mAP at IoU 0.5 with the 11-point interpolation. Returns a fraction.

    The value is read from COCOeval's interpolated precision at IoU 0.5, all areas and 100
    detections. Its precision is the envelope max_{r' >= r} p(r'), sampled at recall
    0, 0.1, ..., 1.0. The mean runs over the classes that have ground truth. With an empty result
    list the mAP is 0 if there is any ground truth, and NaN if there is none.
    """
    return _voc07_from(coco_gt, _bbox_eval(coco_gt, results))


def score_results(coco_gt, detections: list[dict], proposals: list[dict] | None) -> dict[str, Any]:
    """Every metric of one evaluation from its COCO results: the 12 bbox stats, VOC07 mAP@0.5 and (given
    the proposals) the RPN recall. ``python -m repro.detect score`` recomputes a run's numbers this way."""
    ev = _bbox_eval(coco_gt, detections)
    out: dict[str, Any] = {"bbox": _bbox_stats(coco_gt, ev), "voc_map50": _voc07_from(coco_gt, ev)}
    if proposals is not None:
        out["rpn"] = evaluate_proposals(coco_gt, proposals)
    return out

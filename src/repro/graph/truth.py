"""Ground truth of the synthetic videos: box matching and the mining/graph precision figures.

The paper reports no precision for its miner or graph (its evidence is qualitative, Fig. 3); our
synthetic videos carry per-frame object boxes, so we can measure what the paper could not:

* **mining precision**: a mined box is correct if its IoU with some true object box in that frame
  is >= 0.5 (baseline: a box of the same size placed uniformly at random in the same frame);
* **track purity**: a surviving track is pure if its end box A' matches (IoU >= 0.5) the same
  object as its start box A, among tracks whose A matches an object (baseline: box A left in place,
  i.e. no tracking, evaluated at the end frame);
* **inter-edge / pair precision**: an edge or pair is correct if both patches match true objects of
  the same class (unmatched patches count as wrong); chance = the same for random pairs of mined
  patches from different labelled videos.

Pure functions of arrays; only the CLI reads files.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

IOU_MATCH = 0.5


def iou_xywh(box: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x, y, w, h) box with each row of ``boxes`` [K,4]; NaN rows give 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = (float(v) for v in box)
    ix = np.clip(np.minimum(x + w, boxes[:, 0] + boxes[:, 2]) - np.maximum(x, boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(y + h, boxes[:, 1] + boxes[:, 3]) - np.maximum(y, boxes[:, 1]), 0, None)
    inter = ix * iy
    union = w * h + boxes[:, 2] * boxes[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(out, nan=0.0)


def frame_boxes(objects: list[dict], frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True boxes [K,4] (NaN where hidden), object ids [K] and class ids [K] at ``frame``."""
    boxes = np.full((len(objects), 4), np.nan)
    for k, ob in enumerate(objects):
        if frame < len(ob["boxes"]) and ob["boxes"][frame] is not None:
            boxes[k] = ob["boxes"][frame]
    ids = np.array([int(ob["id"]) for ob in objects], dtype=np.int64)
    cls = np.array([int(ob["class_id"]) for ob in objects], dtype=np.int64)
    return boxes, ids, cls


def match_box(box: Sequence[float], objects: list[dict] | None, frame: int) -> tuple[int, int, float]:
    """(object id, class id, IoU) of the best-overlapping true object; ids are -1 below IoU 0.5.

    ``objects`` None (unlabelled video) gives (-1, -1, NaN).
    """
    if objects is None:
        return -1, -1, float("nan")
    if not objects:
        return -1, -1, 0.0
    boxes, ids, cls = frame_boxes(objects, frame)
    ious = iou_xywh(box, boxes)
    k = int(np.argmax(ious))
    if ious[k] >= IOU_MATCH:
        return int(ids[k]), int(cls[k]), float(ious[k])
    return -1, -1, float(ious[k])


def random_box_iou(size: tuple[float, float], frame_wh: tuple[int, int], objects: list[dict], frame: int,
                   rng: np.random.Generator) -> float:
    """Best IoU with the truth of a box of ``size`` (w, h) placed uniformly at random (baseline)."""
    w, h = size
    fw, fh = frame_wh
    x = rng.uniform(0, max(fw - w, 0))
    y = rng.uniform(0, max(fh - h, 0))
    boxes, _, _ = frame_boxes(objects, frame)
    return float(iou_xywh((x, y, w, h), boxes).max()) if len(boxes) else 0.0


def same_class(cls_a: np.ndarray, cls_b: np.ndarray) -> np.ndarray:
    """Pairwise correctness: both patches matched (class >= 0) and of the same class."""
    cls_a, cls_b = np.asarray(cls_a), np.asarray(cls_b)
    return (cls_a >= 0) & (cls_a == cls_b)


def chance_same_class(cls: np.ndarray, video: np.ndarray, rng: np.random.Generator, n_pairs: int = 20000) -> float:
    """Same-class rate of random pairs from different videos (the inter-edge precision baseline)."""
    cls, video = np.asarray(cls), np.asarray(video)
    if len(cls) < 2 or len(np.unique(video)) < 2:
        return float("nan")
    a = rng.integers(0, len(cls), n_pairs)
    b = rng.integers(0, len(cls), n_pairs)
    keep = video[a] != video[b]
    return float(same_class(cls[a[keep]], cls[b[keep]]).mean())


def per_group_mean(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean of ``values`` within each group (e.g. per video), for intervals over videos."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.bincount(inv, weights=values, minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq))
    return sums / np.maximum(counts, 1)

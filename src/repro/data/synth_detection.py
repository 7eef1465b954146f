"""Synthetic COCO-format detection set with small, medium and large objects (FPN; TI transfer).

Images are photo crops (``skimage.data``, offline) with up to ``max_objects`` textured shapes from
:data:`repro.data.shapes.SHAPE_CLASSES` (category_id = class index + 1, the same shapes as in the
synthetic videos).  Object diameters are drawn per COCO size bucket (then log-uniform inside it)
so the small / medium / large buckets are all well populated, which the FPN scale claims need.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from repro.common.io import atomic_write_bytes, atomic_write_json
from repro.data.shapes import (
    SHAPE_CLASSES,
    composite,
    random_appearance,
    random_photo_crop,
    render_object,
    tight_box,
)

SMALL, MEDIUM = 32, 96  # COCO bucket limits on sqrt(area)
# Object diameter d gives a box side of roughly 0.75-1.0 d, so these diameter ranges map onto
# the COCO buckets; probabilities favour larger objects because they are rejected more often.
_DIAMETER_BUCKETS = ((0.0, 38.0, 0.36), (38.0, 110.0, 0.34), (110.0, np.inf, 0.30))
EMPTY_FRACTION = 0.04  # share of images with no objects
MAX_IOU = 0.3
MAX_COVERED = 0.5  # a placement may cover at most this share of another object's box (and vice versa)
_PLACEMENT_TRIES = 30


def _sample_diameter(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform diameter inside a COCO bucket chosen at random (bucket edges clipped to [lo, hi])."""
    buckets = [(max(a, lo), min(b, hi), p) for a, b, p in _DIAMETER_BUCKETS if min(b, hi) > max(a, lo)]
    probs = np.array([p for _, _, p in buckets])
    a, b, _ = buckets[int(rng.choice(len(buckets), p=probs / probs.sum()))]
    return float(np.exp(rng.uniform(np.log(a), np.log(b))))


def _iou_and_cover(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU of ``box`` (x, y, w, h) with each row of ``others`` and intersection / smaller area."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y2 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    a, b = box[2] * box[3], others[:, 2] * others[:, 3]
    return inter / (a + b - inter), inter / np.minimum(a, b)


def _render_image(cfg: dict, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """One uint8 RGB image and its objects ``{"category_id", "bbox", "mask_area"}``."""
    size = int(cfg["image_size"])
    n_classes = min(int(cfg["n_classes"]), len(SHAPE_CLASSES))
    lo = float(cfg["min_object_size"])
    hi = float(min(cfg["max_object_size"], size - 4))
    img = random_photo_crop(rng, size, size, min_zoom=0.3, max_zoom=1.0)
    # Flatten the background a little so objects stay findable on busy photos.
    img = 0.25 + 0.6 * img
    img += rng.normal(0.0, 0.02, img.shape).astype(np.float32)

    max_objects = int(cfg["max_objects"])
    n = 0 if rng.random() < EMPTY_FRACTION or max_objects < 1 else int(rng.integers(1, max_objects + 1))
    diameters = sorted((_sample_diameter(rng, lo, hi) for _ in range(n)), reverse=True)  # big ones first
    placed: list[tuple[int, np.ndarray, np.ndarray]] = []  # (class, box at placement, full coverage)
    for d in diameters:
        cls = int(rng.integers(n_classes))
        rgb, alpha = render_object(cls, d, random_appearance(rng), rng.uniform(0, 360), rng.uniform(0.75, 1.25))
        local = tight_box(alpha > 0.5)
        if local is None:
            continue
        for _ in range(_PLACEMENT_TRIES):
            x0 = int(rng.integers(-local[0], size - local[0] - local[2] + 1))
            y0 = int(rng.integers(-local[1], size - local[1] - local[3] + 1))
            box = np.array([x0 + local[0], y0 + local[1], local[2], local[3]], float)
            if placed:
                iou, cover = _iou_and_cover(box, np.stack([b for _, b, _ in placed]))
                if iou.max() > MAX_IOU or cover.max() > MAX_COVERED:
                    continue
            cov = composite(img, rgb, alpha, x0, y0) > 0.5
            placed.append((cls, box, cov))
            break

    objects = []
    for k, (cls, _, cov) in enumerate(placed):
        visible = cov.copy()
        for _, _, later in placed[k + 1:]:
            visible &= ~later
        box = tight_box(visible)
        if box is None:
            continue
        objects.append({"category_id": cls + 1, "bbox": box, "mask_area": int(visible.sum())})
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), objects


def synthesize_detection(out_dir: Path, cfg: dict, seed: int) -> dict:
    """Write ``images/{train,val}/*.png`` and COCO ``train.json`` / ``val.json`` under ``out_dir``.

    COCO conventions: ``file_name`` is relative to ``images/<split>/`` (also stored as
    ``info.image_root``, relative to ``out_dir``); ``bbox`` is ``[x, y, w, h]`` in px, the tight box
    of the object's visible mask; ``area`` is the **box area** ``w * h`` (so the COCO size buckets
    of ground truth and detections, whose area pycocotools computes from the box, agree); the
    visible mask's pixel count is kept as the extra field ``mask_area``.  ``iscrowd`` is 0,
    ``category_id`` is 1..n_classes in :data:`SHAPE_CLASSES` order.  Image ``i`` of a split depends
    only on ``(seed, split, i)``.
    """
    out_dir = Path(out_dir)
    n_classes = min(int(cfg["n_classes"]), len(SHAPE_CLASSES))
    categories = [{"id": c + 1, "name": SHAPE_CLASSES[c], "supercategory": "shape"} for c in range(n_classes)]
    size = int(cfg["image_size"])
    stats: dict = {"n_classes": n_classes}
    for split_id, split in enumerate(("train", "val")):
        images, annotations = [], []
        buckets = np.zeros(3, int)
        for i in range(int(cfg[f"n_{split}"])):
            rng = np.random.default_rng([seed, split_id, i])
            img, objects = _render_image(cfg, rng)
            name = f"{i:06d}.png"
            ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"PNG encoding failed for {split}/{name}")
            atomic_write_bytes(out_dir / "images" / split / name, png.tobytes())
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
            for ob in objects:
                x, y, w, h = ob["bbox"]
                area = w * h
                buckets[0 if area < SMALL**2 else 1 if area < MEDIUM**2 else 2] += 1
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": ob["category_id"],
                        "bbox": [float(x), float(y), float(w), float(h)],
                        "area": float(area),
                        "mask_area": ob["mask_area"],
                        "iscrowd": 0,
                    }
                )
        coco = {
            "info": {"description": f"synthetic shapes detection set ({split})", "image_root": f"images/{split}"},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        atomic_write_json(out_dir / f"{split}.json", coco, indent=None)
        n_ann = max(len(annotations), 1)
        stats[split] = {
            "n_images": len(images),
            "n_annotations": len(annotations),
            "n_empty_images": len(images) - len({a["image_id"] for a in annotations}),
            "share_small_medium_large": [round(float(b) / n_ann, 3) for b in buckets],
        }
    return stats

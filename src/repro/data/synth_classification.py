"""Synthetic 10-class small-image classification set for the large-batch (LARS) study.

Class ``c`` is shape ``SHAPE_CLASSES[c]`` drawn at a random position, size, rotation and colour
(with a shading gradient) over a smooth random-colour background, plus pixel noise and clutter
(line strokes and small blobs, some drawn over the object).  Labels are clean; the task is
learnable but not trivial for a small CNN (similar shapes such as circle / hexagon / ring, low
contrast and occluding clutter keep it well below 100% after a few epochs).  Image ``i`` of a
split depends only on ``(seed, split, i)``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from repro.common.io import atomic_savez
from repro.common.rng import LABEL_SHUFFLE
from repro.data.shapes import SHAPE_CLASSES, random_colour, shape_mask

SIZE_RANGE = (0.5, 0.9)  # object diameter as a fraction of the image side
NOISE_STD = 0.04
MIN_CONTRAST = 0.2


def _render(rng: np.random.Generator, cls: int, s: int) -> np.ndarray:
    """One float32 H x W x 3 image in [0, 1] showing shape ``cls``."""
    base = random_colour(rng, sat=(0.0, 0.6), val=(0.1, 0.9))
    low = rng.uniform(-1.0, 1.0, (3, 3, 3)).astype(np.float32)
    img = base + cv2.resize(low, (s, s), interpolation=cv2.INTER_CUBIC) * rng.uniform(0.05, 0.25)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s

    def clutter(n: int) -> None:
        for _ in range(n):
            col = tuple(float(v) for v in random_colour(rng, val=(0.2, 1.0)))
            if rng.random() < 0.6:
                p = rng.uniform(-2, s + 2, 4).round().astype(int)
                cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), col, 1, cv2.LINE_AA)
            else:
                c = rng.uniform(0, s, 2).round().astype(int)
                ax = rng.uniform(0.5, 2.5, 2).round().astype(int)
                cv2.ellipse(img, (int(c[0]), int(c[1])), (int(ax[0]), int(ax[1])), float(rng.uniform(0, 180)),
                            0, 360, col, -1, cv2.LINE_AA)

    clutter(int(rng.integers(0, 3)))
    d = s * rng.uniform(*SIZE_RANGE)
    centre = rng.uniform(d / 2 - 1, s - d / 2 + 1, 2)
    alpha = shape_mask(cls, d, rng.uniform(0, 360), canvas=s, center=(float(centre[0]), float(centre[1])))
    colour = random_colour(rng, sat=(0.2, 1.0), val=(0.25, 1.0))
    # Keep at least some luminance contrast to the background (dark object on light ground or v.v.).
    if abs(float(colour.mean() - base.mean())) < MIN_CONTRAST:
        colour = np.clip(colour + np.float32(np.sign(colour.mean() - base.mean() + 1e-6) * MIN_CONTRAST), 0, 1)
    g = rng.normal(0, 1, 2)
    shade = 1.0 + rng.uniform(0, 0.6) * ((xx - 0.5) * g[0] + (yy - 0.5) * g[1])
    obj = colour[None, None, :] * shade[:, :, None]
    img += alpha[:, :, None] * (obj - img)
    clutter(int(rng.integers(0, 2)))
    img += rng.normal(0, NOISE_STD, img.shape).astype(np.float32)
    return img


def _make_split(n: int, s: int, n_classes: int, seed: int, split_id: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n, dtype=np.int64) % n_classes  # balanced classes ...
    np.random.default_rng([seed, split_id, LABEL_SHUFFLE]).shuffle(y)  # ... in random order
    x = np.empty((n, s, s, 3), np.float32)
    for i in range(n):
        x[i] = _render(np.random.default_rng([seed, split_id, i]), int(y[i]), s)
    x = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), y


def write_classification(out_path: Path, cfg: dict, seed: int) -> dict:
    """Save ``x_train``/``x_test`` (uint8 [n, 3, H, W]) and ``y_train``/``y_test`` (int64) as one npz.

    Classes are exactly balanced (``i % n_classes``, shuffled).
    """
    s = int(cfg["image_size"])
    n_classes = int(cfg["n_classes"])
    if n_classes > len(SHAPE_CLASSES):
        raise ValueError(f"n_classes={n_classes} > {len(SHAPE_CLASSES)} shape classes")
    x_tr, y_tr = _make_split(int(cfg["n_train"]), s, n_classes, seed, 0)
    x_te, y_te = _make_split(int(cfg["n_test"]), s, n_classes, seed, 1)
    atomic_savez(out_path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return {"n_train": len(y_tr), "n_test": len(y_te), "n_classes": n_classes, "image_size": s,
            "classes": SHAPE_CLASSES[:n_classes]}

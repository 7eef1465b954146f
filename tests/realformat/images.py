"""Small JPEGs with a few filled rectangles: the pictures of the detection miniatures."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def scene(rng: np.random.Generator, width: int, height: int,
          boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """An RGB uint8 [H, W, 3] noisy background with one flat-coloured rectangle per (x, y, w, h) box."""
    img = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    for x, y, w, h in boxes:
        img[y : y + h, x : x + w] = rng.integers(140, 256, size=3, dtype=np.uint8)
    return img


def jpeg(rgb: np.ndarray, *, grey: bool = False) -> bytes:
    """JPEG bytes of ``rgb``; ``grey`` stores a one-channel (mode L) JPEG, as some COCO images are."""
    im = Image.fromarray(rgb)
    if grey:
        im = im.convert("L")
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=90)
    return out.getvalue()

"""A miniature MNIST release: the four gzipped idx files (``train-images-idx3-ubyte.gz`` etc.).

idx: a big-endian header (magic ``0x00000803`` for images, ``0x00000801`` for labels, then the
uint32 sizes) followed by the uint8 data; gzipped with the original file name in the gzip header.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from realformat.archive import gzip_bytes, md5


def idx_bytes(a: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array (1-D labels or [n, 28, 28] images)."""
    return struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[n, 28, 28] uint8: a bright bar whose position codes the label, on a dark noisy ground."""
    img = rng.integers(0, 30, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, y in enumerate(labels):
        r = 3 + 2 * int(y)
        img[i, r : r + 3, 4:24] = 255
    return img


def build(out: Path, *, n_train: int = 300, n_test: int = 60, seed: int = 1998) -> dict[str, str]:
    """Write the four ``.gz`` files into ``out``; returns {file name: md5}."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    digests = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for kind, arr in (("images-idx3", digits(labels, rng)), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            path = out / f"{name}.gz"
            path.write_bytes(gzip_bytes(idx_bytes(arr), name))
            digests[path.name] = md5(path)
    return digests

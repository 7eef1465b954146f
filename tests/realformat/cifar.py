"""A miniature CIFAR-10 python release: ``cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/``
``data_batch_1`` ... ``data_batch_5``, ``test_batch``, ``batches.meta`` and ``readme.html``.

Each batch is a Python 2 pickle (see :mod:`realformat.py2pickle`) of ``{b'batch_label', b'labels'
(a list of ints), b'data' (uint8 [n, 3072], rows R(1024) G(1024) B(1024)), b'filenames'}``; the meta
file holds ``b'label_names'``, ``b'num_cases_per_batch'`` and ``b'num_vis'``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realformat import py2pickle
from realformat.archive import md5, write_tar

LABELS = (b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck")


def images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n, 3072]: a class-dependent colour per image plus noise, so a classifier can learn them."""
    base = (np.arange(10)[:, None] * np.array([25, 70, 115]) % 256).astype(np.int64)  # [10, 3]
    img = base[labels][:, :, None] + rng.integers(-40, 40, size=(len(labels), 3, 1024))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def batch(label: bytes, labels: np.ndarray, rng: np.random.Generator, first: int) -> bytes:
    names = [f"{LABELS[y].decode()}_s_{first + i:06d}.png".encode() for i, y in enumerate(labels)]
    return py2pickle.dumps({b"batch_label": label, b"labels": [int(y) for y in labels],
                            b"data": images(labels, rng), b"filenames": names})


def build(out: Path, *, per_batch: int = 60, n_test: int = 60, seed: int = 10) -> dict[str, str]:
    """Write ``cifar-10-python.tar.gz`` into ``out``; returns {file name: md5}."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    d = "cifar-10-batches-py"
    members = {f"{d}/batches.meta": py2pickle.dumps({b"num_cases_per_batch": per_batch,
                                                      b"label_names": list(LABELS), b"num_vis": 3072})}
    for i in range(1, 6):
        labels = rng.integers(0, 10, per_batch)
        members[f"{d}/data_batch_{i}"] = batch(f"training batch {i} of 5".encode(), labels, rng, per_batch * i)
    members[f"{d}/readme.html"] = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n"
    members[f"{d}/test_batch"] = batch(b"testing batch 1 of 1", rng.integers(0, 10, n_test), rng, 0)
    f = write_tar(out / "cifar-10-python.tar.gz", members, gz=True)
    return {f.name: md5(f)}

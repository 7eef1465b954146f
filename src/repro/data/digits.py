"""scikit-learn's handwritten digits (1797 real 8x8 images shipped in the wheel), split train/test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from repro.common.io import atomic_savez


def stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices with ``round(test_fraction * n_c)`` test items from each class."""
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def write_digits(out_path: Path, cfg: dict, seed: int) -> dict:
    """Save ``x_train``/``x_test`` (float32 [n, 8, 8] in [0, 1]) and int64 labels as one npz file.

    The split is stratified (each class keeps the same test share) so small GAN / quantization
    evaluations see every digit in the same proportion.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y, float(cfg["test_fraction"]), np.random.default_rng(seed))
    atomic_savez(out_path, x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te])
    return {"n_train": int(len(tr)), "n_test": int(len(te)), "n_classes": int(len(np.unique(y)))}

"""Classification data for the large-batch study: the synthetic ``classification.npz`` (embedded
default) or CIFAR-10's python pickle batches (full scale), as uint8 [N, 3, H, W] + int64 labels.

A fixed validation split (``val_fraction`` of the training set, chosen by the data, not the run
seed) selects the best learning rate per arm and batch; accuracy is reported on the test split, so
the LR search does not inflate the reported numbers (the paper picks the best LR on its ImageNet
validation set and reports that same set).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repro.data.readers import read_cifar10, read_npz_splits

__all__ = ["Split", "StudyData", "load_cifar10", "load_classification", "load_npz", "prepare"]


def _check(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise ValueError(f"{what}: images must be [N, 3, H, H], got shape {tuple(x.shape)}")
    if x.dtype != np.uint8:
        raise ValueError(f"{what}: images must be uint8, got {x.dtype}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{what}: labels must be [N] matching {len(x)} images, got shape {tuple(y.shape)}")
    if len(x) == 0:
        raise ValueError(f"{what}: no images")


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The data stage's ``classification.npz``: x_train/x_test uint8 [N,3,H,W], y_train/y_test int64."""
    path = Path(path)
    out = read_npz_splits(path, what="classification data")
    for split in ("train", "test"):
        _check(out[f"x_{split}"], out[f"y_{split}"], f"{path} ({split})")
    out["y_train"] = out["y_train"].astype(np.int64)
    out["y_test"] = out["y_test"].astype(np.int64)
    return out


def load_cifar10(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """CIFAR-10 from the extracted ``cifar-10-python.tar.gz`` (:func:`repro.data.readers.read_cifar10`)."""
    out = read_cifar10(folder)
    for split in ("train", "test"):
        _check(out[f"x_{split}"], out[f"y_{split}"], f"{folder} ({split})")
    return out


def load_classification(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """An ``.npz`` file (synthetic set) or a CIFAR-10 folder, by what ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return load_cifar10(path)
    return load_npz(path)


@dataclass
class Split:
    x: torch.Tensor  # [N, 3, H, W] float32, normalised
    y: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class StudyData:
    train: Split
    val: Split
    test: Split
    num_classes: int
    image_size: int


def prepare(
    arrays: dict[str, np.ndarray], *, val_fraction: float, device: torch.device | str = "cpu", split_seed: int = 0
) -> StudyData:
    """Hold out ``val_fraction`` of train (fixed permutation from ``split_seed``), normalise every split
    by the remaining train set's per-channel mean/std, and move it to ``device``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    x, y = arrays["x_train"], arrays["y_train"]
    perm = np.random.default_rng(split_seed).permutation(len(y))
    n_val = max(1, int(round(val_fraction * len(y))))
    if n_val >= len(y):
        raise ValueError(f"val_fraction={val_fraction} leaves no training images out of {len(y)}")
    val_idx, train_idx = perm[:n_val], np.sort(perm[n_val:])
    x_tr = torch.from_numpy(x[train_idx]).float().div_(255.0)  # [N, 3, H, W]
    mean = x_tr.mean(dim=(0, 2, 3), keepdim=True)  # [1, 3, 1, 1]
    std = x_tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)  # [1, 3, 1, 1]

    def to_split(xs: np.ndarray, ys: np.ndarray) -> Split:
        xt = (torch.from_numpy(xs).float().div_(255.0) - mean) / std
        return Split(xt.contiguous().to(device), torch.from_numpy(np.asarray(ys, np.int64)).to(device))

    n_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    return StudyData(
        train=Split(((x_tr - mean) / std).contiguous().to(device), torch.from_numpy(y[train_idx]).to(device)),
        val=to_split(x[val_idx], y[val_idx]),
        test=to_split(arrays["x_test"], arrays["y_test"]),
        num_classes=n_classes,
        image_size=int(x.shape[-1]),
    )

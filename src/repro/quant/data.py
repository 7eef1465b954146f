"""Datasets of the quantization stage as float tensors: digits (default), MNIST and CIFAR-10 (full).

* digits: ``results/data/digits.npz`` (x_* float32 [n, 8, 8] in [0, 1]) -> [n, 1, 8, 8].
* MNIST: the raw idx files (``train-images-idx3-ubyte`` etc., gunzipped by the download rule, or
  still ``.gz``) -> [n, 1, 28, 28] scaled to [0, 1) by 1/256 as Caffe's LeNet.
* CIFAR-10: the python pickles in ``cifar-10-batches-py`` (data_batch_1..5, test_batch)
  -> [n, 3, 32, 32], per-channel standardized with the training-set mean and std.
Errors name the missing file or the bad array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repro.data.readers import read_cifar10, read_mnist, read_npz_splits

DATASETS = ("digits", "mnist", "cifar10", "imagenet")


@dataclass(frozen=True)
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()) + 1)

    def to(self, device: torch.device | str) -> "Split":
        return Split(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)))


def _check(x: np.ndarray, y: np.ndarray, name: str, what: str) -> None:
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{what}: bad arrays for {name}: x {x.shape}, y {y.shape} (want [n, ...] and [n])")


def load_digits_npz(path: str | Path) -> Split:
    path = Path(path)
    arrs = read_npz_splits(path, what="digits data")
    for s in ("train", "test"):
        _check(arrs[f"x_{s}"], arrs[f"y_{s}"], s, str(path))
        if arrs[f"x_{s}"].ndim != 3:
            raise ValueError(f"{path}: x_{s} has shape {arrs[f'x_{s}'].shape}, expected [n, H, W]")
    return Split(
        torch.from_numpy(arrs["x_train"].astype(np.float32)).unsqueeze(1),
        torch.from_numpy(arrs["y_train"].astype(np.int64)),
        torch.from_numpy(arrs["x_test"].astype(np.float32)).unsqueeze(1),
        torch.from_numpy(arrs["y_test"].astype(np.int64)),
    )


def load_mnist(folder: str | Path) -> Split:
    arrs = read_mnist(folder)
    out = []
    for s in ("train", "test"):
        x, y = arrs[f"x_{s}"], arrs[f"y_{s}"]
        _check(x, y, s, str(folder))
        out += [torch.from_numpy(x.astype(np.float32) / 256.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64))]
    return Split(*out)


def load_cifar10(folder: str | Path) -> Split:
    arrs = read_cifar10(folder)
    for s in ("train", "test"):
        _check(arrs[f"x_{s}"], arrs[f"y_{s}"], s, str(folder))
    xtr, xte = (arrs[k].astype(np.float32) / 255.0 for k in ("x_train", "x_test"))
    ytr, yte = (arrs[k].astype(np.int64) for k in ("y_train", "y_test"))
    mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
    std = xtr.std(axis=(0, 2, 3), keepdims=True)
    return Split(*(torch.from_numpy(a) for a in ((xtr - mean) / std, ytr, (xte - mean) / std, yte)))


def load_dataset(name: str, path: str | Path) -> Split:
    if name == "digits":
        return load_digits_npz(path)
    if name == "mnist":
        return load_mnist(path)
    if name == "cifar10":
        return load_cifar10(path)
    if name == "imagenet":
        raise ValueError("ImageNet is named in the full config only (no download is pinned)")
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def augment_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """He et al.'s CIFAR augmentation on a batch [B, C, H, W]: 4-pixel zero-pad, random crop, h-flip."""
    b, _, hgt, wid = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dev = x.device
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    rows = (oy[:, None] + torch.arange(hgt, device=dev)[None])  # [B, H]
    cols = (ox[:, None] + torch.arange(wid, device=dev)[None])  # [B, W]
    out = padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(x.shape[1], device=dev)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    return torch.where(flip[:, None, None, None], out.flip(3), out)

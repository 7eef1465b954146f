"""Datasets of the quantization stage as float tensors: digits (default), MNIST and CIFAR-10 (full).

* digits: ``results/data/digits.npz`` (x_* float32 [n, 8, 8] in [0, 1]) -> [n, 1, 8, 8].
* MNIST: the raw idx files (``train-images-idx3-ubyte`` etc., gunzipped by the download rule, or
  still ``.gz``) -> [n, 1, 28, 28] scaled to [0, 1) by 1/256 as Caffe's LeNet.
* CIFAR-10: the python pickles in ``cifar-10-batches-py`` (data_batch_1..5, test_batch)
  -> [n, 3, 32, 32], per-channel standardized with the training-set mean and std.
Errors name the missing file or the bad array.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repro.common.npz import read_npz

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
    arrs = read_npz(path, ("x_train", "y_train", "x_test", "y_test"), what="digits data")
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


def _find(folder: Path, name: str) -> Path:
    for cand in (folder / name, folder / (name + ".gz")):
        if cand.exists():
            return cand
    hits = sorted(folder.rglob(name)) + sorted(folder.rglob(name + ".gz"))
    if not hits:
        raise FileNotFoundError(f"MNIST file {name} (or {name}.gz) not found under {folder}")
    return hits[0]


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format: magic 0x0000 08 <ndim>, big-endian sizes, uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data, header says {dims}")
    return data.reshape(dims)


def load_mnist(folder: str | Path) -> Split:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    out = []
    for prefix in ("train", "t10k"):
        x = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
        _check(x, y, prefix, str(folder))
        out += [torch.from_numpy(x.astype(np.float32) / 256.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64))]
    return Split(*out)


def _unpickle(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"CIFAR-10 batch not found: {path}")
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def load_cifar10(folder: str | Path) -> Split:
    folder = Path(folder)
    base = folder / "cifar-10-batches-py" if (folder / "cifar-10-batches-py").is_dir() else folder
    parts = [_unpickle(base / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(base / "test_batch")

    def arrays(batches: list[dict], what: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b[b"labels"]) for b in batches])
        _check(x, y, what, str(base))
        return x.astype(np.float32) / 255.0, y.astype(np.int64)

    xtr, ytr = arrays(parts, "train")
    xte, yte = arrays([test], "test")
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
        raise NotImplementedError("ImageNet is named in the full config only (no download is pinned)")
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

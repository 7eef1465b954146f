"""Classification data for the large-batch study: the synthetic ``classification.npz`` (embedded
default) or CIFAR-10's python pickle batches (full scale), as uint8 [N, 3, H, W] + int64 labels held
in memory; or ImageNet (ILSVRC2012, unpacked by ``python -m repro.data imagenet``), read lazily from
its JPEG files by a torch DataLoader (:class:`ImageSplit`).

A fixed validation split (``val_fraction`` of the training set, chosen by the data, not the run
seed) selects the best learning rate per arm and batch; accuracy is reported on the test split, so
the LR search does not inflate the reported numbers (the paper picks the best LR on its ImageNet
validation set and reports that same set). For ImageNet the held-out share comes from the ILSVRC2012
training set and the test split is the ILSVRC2012 validation set.

ImageNet preprocessing follows the paper (the text of its Table 4: "256x256 resize, random 224 crop,
flip"; accuracies with one central crop) at the config's ``image_size`` S: training images are resized to
R x R with R = round(S * 256 / 224), randomly cropped to S x S and flipped; evaluation images are
resized the same way and centre-cropped. Both are normalised by torchvision's ImageNet channel
statistics (the paper's Caffe nets subtract a mean image; a per-channel mean/std needs no pass over
1.28M images). The random crop and flip of image i in epoch e of a run with seed s are drawn from a
generator seeded by (s, e, i) alone, so the batches do not depend on the number of loader processes
and a run resumed mid-epoch sees exactly the images it would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.data.imagenet import is_prepared, open_imagenet
from repro.data.readers import read_cifar10, read_npz_splits

__all__ = ["ImageNetSource", "ImageSplit", "Split", "StudyData", "dataset_name", "load_cifar10",
           "load_classification", "load_imagenet", "load_npz", "prepare", "source_of", "stream_imagenet"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet channel statistics
IMAGENET_STD = (0.229, 0.224, 0.225)
SOURCES = {"synthetic": "synthetic 10-class shapes", "cifar10": "CIFAR-10", "imagenet": "ImageNet (ILSVRC2012)"}


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


@dataclass
class ImageNetSource:
    """An unpacked ImageNet folder: the (file, class) lists of its two splits, read before any work."""

    path: Path
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    num_classes: int


def load_imagenet(path: str | os.PathLike) -> ImageNetSource:
    """The file lists of an ImageNet folder written by ``python -m repro.data imagenet``."""
    train, val = open_imagenet(path, "train"), open_imagenet(path, "val")
    if not train.samples or not val.samples:
        raise ValueError(f"{path}: no images in {'train' if not train.samples else 'val'}/")
    return ImageNetSource(Path(path), list(train.samples), list(val.samples), len(train.wnids))


def source_of(path: str | os.PathLike) -> str:
    """What ``path`` holds: ``synthetic`` (an .npz), ``imagenet`` (an unpacked ImageNet folder) or ``cifar10``."""
    path = Path(path)
    if not path.is_dir():
        return "synthetic"
    return "imagenet" if is_prepared(path) else "cifar10"


def dataset_name(path: str | os.PathLike, source: str | None = None) -> str:
    """The data's name for notes and figures, from a cell's recorded ``source`` (or its path's suffix)."""
    return SOURCES[source or ("synthetic" if Path(path).suffix == ".npz" else "cifar10")]


def load_classification(path: str | os.PathLike) -> dict[str, np.ndarray] | ImageNetSource:
    """An ``.npz`` file (synthetic set), an unpacked ImageNet folder (file lists; the images are read
    lazily) or a CIFAR-10 folder, by what ``path`` is."""
    source = source_of(path)
    if source == "imagenet":
        return load_imagenet(path)
    if source == "cifar10":
        return load_cifar10(path)
    return load_npz(path)


@dataclass
class Split:
    x: torch.Tensor  # [N, 3, H, W] float32, normalised
    y: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, chunks: list[torch.Tensor], *, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Images and labels of each index chunk in turn (in memory: no augmentation, so no seed)."""
        for idx in chunks:
            yield self.x[idx], self.y[idx]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in order, ``batch_size`` images at a time."""
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]


class _ImageFiles(torch.utils.data.Dataset):
    """Image files -> normalised [3, S, S] float tensors. An item ``(i, aug_seed)`` is image i with the
    training crop and flip drawn from ``aug_seed``; a plain ``i`` is image i with the evaluation crop."""

    def __init__(self, files: list[str], image_size: int) -> None:
        from torchvision import transforms as T

        resize = T.Resize((round(image_size * 256 / 224),) * 2)
        tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        self.files = files
        self.train_tf = T.Compose([resize, T.RandomCrop(image_size), T.RandomHorizontalFlip(), *tail])
        self.eval_tf = T.Compose([resize, T.CenterCrop(image_size), *tail])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        from torchvision.datasets.folder import default_loader

        if isinstance(item, tuple):
            i, aug_seed = item
            with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left as it was
                torch.manual_seed(aug_seed)
                return self.train_tf(default_loader(self.files[i]))
        return self.eval_tf(default_loader(self.files[item]))


class _LazyImages:
    """``split.x``: ``x[idx]`` decodes those images with the evaluation crop onto the split's device."""

    def __init__(self, split: ImageSplit) -> None:
        self._split = split
        self.device = split.device

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        items = idx.tolist()
        return torch.cat(list(self._split._load([items[i : i + 256] for i in range(0, len(items), 256)])))


class ImageSplit:
    """A split read from image files by a torch DataLoader with ``workers`` processes (ImageNet).

    ``y`` [N] int64 is in memory on ``device``; ``x[idx]`` gives evaluation-cropped images (the first
    batch the study measures layer ratios on); training batches come from :meth:`batches`.
    """

    def __init__(self, files: list[str], labels: list[int], *, image_size: int, device: torch.device | str,
                 workers: int) -> None:
        self.device = torch.device(device)
        self.images = _ImageFiles(files, image_size)
        self.y = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        self.workers = workers
        self.x = _LazyImages(self)

    def __len__(self) -> int:
        return len(self.y)

    def _load(self, batches: list[list[Any]]) -> Iterator[torch.Tensor]:
        loader = torch.utils.data.DataLoader(self.images, batch_sampler=batches, num_workers=self.workers,
                                             pin_memory=self.device.type == "cuda")
        for x in loader:
            yield x.to(self.device, non_blocking=True)

    def batches(self, chunks: list[torch.Tensor], *, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training images (random crop and flip from (seed, epoch, image)) and labels of each chunk in
        turn; the loader decodes ahead of the training step."""
        base = (seed * 1_000_003 + epoch) * 4_000_037
        plan = [[(i, base + i) for i in idx.tolist()] for idx in chunks]
        for idx, x in zip(chunks, self._load(plan)):
            yield x, self.y[idx]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in order with the evaluation crop, ``batch_size`` images at a time."""
        starts = range(0, len(self), batch_size)
        plan = [list(range(s, min(s + batch_size, len(self)))) for s in starts]
        for s, x in zip(starts, self._load(plan)):
            yield x, self.y[s : s + batch_size]


@dataclass
class StudyData:
    train: Split | ImageSplit
    val: Split | ImageSplit
    test: Split | ImageSplit
    num_classes: int
    image_size: int


def _holdout(n: int, val_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: ``val_fraction`` of ``n`` held out by a fixed permutation from ``split_seed``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(split_seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    if n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves no training images out of {n}")
    return np.sort(perm[n_val:]), perm[:n_val]


def stream_imagenet(source: ImageNetSource, *, val_fraction: float, image_size: int, workers: int,
                     device: torch.device | str = "cpu", split_seed: int = 0) -> StudyData:
    """ImageNet as lazily read splits: train less the held-out ``val_fraction`` (fixed permutation from
    ``split_seed``), that held-out share (evaluation crop), and the ILSVRC2012 validation set as test."""
    if image_size < 8 or image_size % 8:
        raise ValueError(f"lars.image_size must be a multiple of 8 (the nets pool 3 times), got {image_size}")
    train_idx, val_idx = _holdout(len(source.train), val_fraction, split_seed)

    def split(samples: list[tuple[str, int]]) -> ImageSplit:
        return ImageSplit([f for f, _ in samples], [c for _, c in samples], image_size=image_size, device=device,
                          workers=workers)

    return StudyData(
        train=split([source.train[i] for i in train_idx]),
        val=split([source.train[i] for i in val_idx]),
        test=split(source.val),
        num_classes=source.num_classes,
        image_size=image_size,
    )


def prepare(
    arrays: dict[str, np.ndarray] | ImageNetSource, *, val_fraction: float, device: torch.device | str = "cpu",
    split_seed: int = 0, image_size: int | None = None, workers: int = 0,
) -> StudyData:
    """Hold out ``val_fraction`` of train (fixed permutation from ``split_seed``), normalise every split
    by the remaining train set's per-channel mean/std, and move it to ``device``. ImageNet goes to
    :func:`stream_imagenet` (``image_size`` required: the config's ``lars.image_size``)."""
    if isinstance(arrays, ImageNetSource):
        if image_size is None:
            raise ValueError(f"config key 'lars.image_size' is missing: ImageNet data ({arrays.path}) needs the "
                             "side of its crops (paper: 224)")
        return stream_imagenet(arrays, val_fraction=val_fraction, image_size=image_size, workers=workers,
                                device=device, split_seed=split_seed)
    x, y = arrays["x_train"], arrays["y_train"]
    train_idx, val_idx = _holdout(len(y), val_fraction, split_seed)
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

"""Loaders for the stage's inputs; each names the bad file or key when the input is not as expected.

- 2-D mixtures: ``results/data/mixtures/<name>.npz`` (samples [n, 2], labels, centers [K, 2], std);
- digits: ``results/data/digits.npz`` (x_train float32 [n, 8, 8] in [0, 1], y_train, x_test, y_test);
- MNIST: the idx files of ``results/data/raw/mnist`` (``train-images-idx3-ubyte`` etc., gzipped or
  not, found anywhere below the folder), zero-padded from 28x28 to 32x32 for the DCGAN nets;
- CIFAR-10: the python pickles of ``results/data/raw/cifar10`` (``cifar-10-batches-py/data_batch_1``
  … ``_5`` and ``test_batch``);
- stacked digits / stacked MNIST (``stacked``, ``stacked_mnist``): three random images of the base set
  (digits / MNIST) as the three channels of one image, label ``100 a + 10 b + c`` — 1000 modes, the
  analogue of 1612.02136 Table 2's compositional MNIST (which places 3 digits in one 64x64 image);
  the draw is fixed (seed 0) so every job sees the same set.

Images are returned as uint8 [n, C, H, W] with int64 labels; :func:`to_unit_range` maps them to
[-1, 1], the range of the generators' tanh output. Digits are returned already in [-1, 1].
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.data.readers import read_cifar10, read_mnist, read_npz_splits

__all__ = ["Mixture", "ImageSet", "load_mixture", "load_digits", "load_mnist", "load_cifar10", "load_images", "stack_triples",
           "to_unit_range"]

IMAGE_DATASETS = ("digits", "mnist", "cifar10", "stacked", "stacked_mnist")
# stacked sets: the base set they are composed of (its scorer classifies each channel)
STACKED_BASE = {"stacked": "digits", "stacked_mnist": "mnist"}
STACKED_MIN_TRAIN = 20000  # triples drawn at least (20 per mode on average), so every mode is in the set
MIXTURE_DATASETS = ("ring8", "ring6", "grid25")


@dataclass(frozen=True)
class Mixture:
    samples: np.ndarray  # float32 [n, 2]
    labels: np.ndarray  # int64 [n]
    centers: np.ndarray  # float64 [K, 2]
    std: float


@dataclass(frozen=True)
class ImageSet:
    x_train: np.ndarray  # uint8 [n, C, H, W] (mnist, cifar10) or float32 [n, 1, 8, 8] in [-1, 1] (digits)
    y_train: np.ndarray  # int64 [n]
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what}: no such file or folder {str(path)!r}")
    return path


def _load_npz(path: Path, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file; the error names the file and the missing arrays."""
    try:
        with np.load(_need(path, what), allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise ValueError(f"{path}: {what} file lacks arrays {missing}")
            return {k: f[k] for k in keys}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, (FileNotFoundError, ValueError)) and str(path) in str(exc):
            raise
        raise ValueError(f"{path}: not a readable .npz {what} file (truncated or corrupt?): {exc}") from exc


def load_mixture(path: str | Path) -> Mixture:
    """One ``<name>.npz`` written by the data stage (``repro.data.mixtures.write_mixtures``)."""
    path = Path(path)
    a = _load_npz(path, ("samples", "labels", "centers", "std"), "mixture")
    samples, labels, centers, std = a["samples"], a["labels"], a["centers"], float(a["std"])
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"{path}: 'samples' must have shape [n, 2], got {samples.shape}")
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise ValueError(f"{path}: 'centers' must have shape [K, 2], got {centers.shape}")
    if not std > 0:
        raise ValueError(f"{path}: 'std' must be positive, got {std}")
    return Mixture(samples.astype(np.float32), labels.astype(np.int64), centers.astype(np.float64), std)


def load_digits(path: str | Path) -> ImageSet:
    """scikit-learn's digits as float32 [n, 1, 8, 8] in [-1, 1]."""
    path = Path(path)
    arrays = read_npz_splits(path, what="digits")
    for key in ("x_train", "x_test"):
        if arrays[key].ndim != 3 or arrays[key].shape[1:] != (8, 8):
            raise ValueError(f"{path}: {key!r} must have shape [n, 8, 8], got {arrays[key].shape}")
    x_tr = (arrays["x_train"].astype(np.float32) * 2 - 1)[:, None]
    x_te = (arrays["x_test"].astype(np.float32) * 2 - 1)[:, None]
    return ImageSet(x_tr, arrays["y_train"].astype(np.int64), x_te, arrays["y_test"].astype(np.int64), 10)


def load_mnist(folder: str | Path) -> ImageSet:
    """MNIST from its idx files, zero-padded to uint8 [n, 1, 32, 32]."""
    a = read_mnist(folder)
    x_tr, x_te = (np.pad(a[k], ((0, 0), (2, 2), (2, 2)))[:, None].copy() for k in ("x_train", "x_test"))
    return ImageSet(x_tr, a["y_train"], x_te, a["y_test"], 10)


def load_cifar10(folder: str | Path) -> ImageSet:
    """CIFAR-10 from the python pickles as uint8 [n, 3, 32, 32]."""
    a = read_cifar10(folder)
    return ImageSet(a["x_train"], a["y_train"], a["x_test"], a["y_test"], 10)


def stack_triples(base: ImageSet, *, n_train: int, n_test: int, seed: int = 0) -> ImageSet:
    """Three independently drawn base images as the channels of one image: x [n, 3, H, W] (base images
    have one channel), label ``100 y_a + 10 y_b + y_c`` (1000 classes for 10-class bases)."""
    if base.x_train.shape[1] != 1:
        raise ValueError(f"stacking needs one-channel base images, got {base.x_train.shape[1]} channels")
    rng = np.random.default_rng(seed)

    def draw(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, len(x), size=(n, 3))  # n x 3
        labels = (y[idx] * np.array([base.n_classes**2, base.n_classes, 1])).sum(1)
        return x[idx, 0], labels.astype(np.int64)  # n x 3 x H x W

    x_tr, y_tr = draw(base.x_train, base.y_train, n_train)
    x_te, y_te = draw(base.x_test, base.y_test, n_test)
    return ImageSet(x_tr, y_tr, x_te, y_te, base.n_classes**3)


def load_images(dataset: str, path: str | Path) -> ImageSet:
    """Dispatch on the experiment's dataset name (stacked sets: ``path`` is their base set's)."""
    loaders = {"digits": load_digits, "mnist": load_mnist, "cifar10": load_cifar10}
    if dataset in STACKED_BASE:
        base = loaders[STACKED_BASE[dataset]](path)
        return stack_triples(base, n_train=max(len(base.x_train), STACKED_MIN_TRAIN), n_test=len(base.x_test))
    if dataset not in loaders:
        raise ValueError(f"unknown image dataset {dataset!r} (expected one of {sorted(loaders)})")
    return loaders[dataset](path)


def to_unit_range(x: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [-1, 1]; float inputs (digits) are returned as float32 unchanged."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    return x.astype(np.float32)

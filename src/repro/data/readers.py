"""Readers for the datasets the data stage provides, shared by the training stages (public API).

Each returns plain numpy arrays exactly as stored; the stages convert them (dtype, scaling,
padding, tensors) themselves. Every error names the folder or file and the missing/bad part.

- :func:`read_cifar10`: the python pickles of ``cifar-10-python.tar.gz`` as the download rule
  unpacks it (``<folder>/cifar-10-batches-py/data_batch_1`` … ``_5``, ``test_batch``; the format is
  described on https://www.cs.toronto.edu/~kriz/cifar.html).
- :func:`read_mnist`: LeCun's idx files (``train-images-idx3-ubyte`` etc.), gunzipped by the
  download rule or still ``.gz``, anywhere below the folder.
- :func:`read_npz_splits`: an ``.npz`` with ``x_train``/``y_train``/``x_test``/``y_test``
  (``digits.npz``, ``classification.npz``), checked for the four arrays and matching lengths.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from repro.common.npz import read_npz

__all__ = ["read_cifar10", "read_idx", "read_mnist", "read_npz_splits", "SPLIT_KEYS"]

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
MNIST_FILES = {"train": "train", "test": "t10k"}  # split -> idx file prefix


def _check_splits(arrays: dict[str, np.ndarray], where: str) -> None:
    """x_<split> [N, ...] and y_<split> [N] for train and test."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 1:
            raise ValueError(f"{where}: x_{split} must be [N, ...], got a scalar")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"{where}: y_{split} labels must be [N] matching the N={len(x)} rows of x_{split}, "
                f"got shape {tuple(y.shape)}"
            )


def read_npz_splits(path: str | os.PathLike, *, what: str) -> dict[str, np.ndarray]:
    """``x_train``, ``y_train``, ``x_test``, ``y_test`` of an ``.npz`` file, as stored.

    FileNotFoundError "<what> not found: <path>" when absent; ValueError naming the file when it is
    not a readable npz, lacks one of the arrays, or a label array does not match its images.
    """
    path = Path(path)
    arrays = read_npz(path, SPLIT_KEYS, what=what)
    _check_splits(arrays, f"{path} ({what})")
    return arrays


# --------------------------------------------------------------------------- CIFAR-10
def _cifar_root(folder: Path) -> Path:
    """The folder holding the batches: ``folder/cifar-10-batches-py``, ``folder`` itself, or below."""
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 folder not found: {folder}")
    for cand in (folder / CIFAR_DIR, folder):
        if (cand / CIFAR_TRAIN[0]).is_file():
            return cand
    hits = sorted(folder.rglob(CIFAR_TRAIN[0]))
    if not hits:
        raise FileNotFoundError(
            f"{folder}: no CIFAR-10 python batches inside (expected {CIFAR_DIR}/data_batch_1 ... test_batch; "
            "is the download complete?)"
        )
    return hits[0].parent


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # Pickled dicts in CIFAR's own format; the archive was verified against its published md5 by the
    # download rule before extraction.
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR-10 python batch (truncated or corrupt?): {exc}") from exc
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (no b'data'/b'labels')")
    x = np.asarray(d[b"data"], dtype=np.uint8)  # [n, 3072], rows R(1024) G(1024) B(1024)
    y = np.asarray(d[b"labels"], dtype=np.int64)  # [n]
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: data has shape {tuple(x.shape)}, expected [n, 3072]")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{path}: labels have shape {tuple(y.shape)}, expected [{len(x)}]")
    return x.reshape(-1, 3, 32, 32), y


def read_cifar10(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """CIFAR-10 below ``folder``: x_train [50000, 3, 32, 32] / x_test [10000, 3, 32, 32] uint8 (channel-
    major, as stored), y_train / y_test int64."""
    root = _cifar_root(Path(folder))
    missing = [n for n in CIFAR_TRAIN + (CIFAR_TEST,) if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: CIFAR-10 batches missing: {missing}")
    train = [_cifar_batch(root / n) for n in CIFAR_TRAIN]
    x_te, y_te = _cifar_batch(root / CIFAR_TEST)
    return {
        "x_train": np.concatenate([t[0] for t in train]),
        "y_train": np.concatenate([t[1] for t in train]),
        "x_test": x_te,
        "y_test": y_te,
    }


# --------------------------------------------------------------------------- MNIST
def _find_idx(folder: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` directly in ``folder``, else anywhere below it (unpacked file first)."""
    for cand in (folder / stem, folder / (stem + ".gz")):
        if cand.is_file():
            return cand
    for name in (stem, stem + ".gz"):
        hits = sorted(folder.rglob(name))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"{folder}: no {stem!r} (or {stem}.gz) below this folder; is the download complete?")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An idx file (LeCun's MNIST format: magic 0x0000, type 0x08 = unsigned byte, ndim; big-endian
    uint32 sizes; then the data), gzipped or not, as a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: not a readable idx file (truncated or corrupt?): {exc}") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an idx file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {raw[:4].hex()}, expected 000008xx)")
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: idx header truncated (ndim {ndim})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {body.size} values")
    return body.reshape(shape)


def read_mnist(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """MNIST below ``folder``: x_train [60000, 28, 28] / x_test [10000, 28, 28] uint8, y_* int64."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    out: dict[str, np.ndarray] = {}
    for split, prefix in MNIST_FILES.items():
        images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{images}: MNIST images must be [n, 28, 28], got {tuple(x.shape)}")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{labels}: MNIST labels must be [{len(x)}] to match {images.name}, got {tuple(y.shape)}")
        out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    return out

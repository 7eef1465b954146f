"""Reading a stage's ``.npz`` input with errors that name the file (missing, truncated, corrupt, incomplete)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np


def read_npz(path: str | os.PathLike, keys: tuple[str, ...], *, what: str = "data",
             all_arrays: bool = False) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of ``path`` (no pickles; with ``all_arrays`` every array it holds, ``keys``
    required), loaded into memory.

    FileNotFoundError "<what> not found: <path>" when it is absent; ValueError naming the file when it
    is not a readable npz (a truncated download or a corrupt file: numpy would otherwise raise a bare
    zipfile/pickle error) or lacks one of ``keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in (f.files if all_arrays else keys) if k in f.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz file (truncated or corrupt?): {exc}") from exc
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}")
    return arrays


def open_npy(path: str | os.PathLike, *, what: str = "data") -> np.ndarray:
    """A ``.npy`` file memory-mapped read-only (no pickles), with errors that name the file.

    FileNotFoundError "<what> not found: <path>" when it is absent; ValueError naming the file when it
    is not a readable .npy (truncated: numpy's bare "mmap length is greater than file size").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy file (truncated or corrupt?): {exc}") from exc

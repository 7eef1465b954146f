"""Checkpoint save/resume for long jobs.

Checkpoints live in a folder the rule passes as ``--checkpoint-dir`` and does *not* declare as an
output, so Snakemake never deletes a half-trained run; only the final result is declared.
A checkpoint is one dict of tensors and plain Python values, loadable with ``weights_only=True``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from repro.common.io import atomic_write_bytes

LATEST = "latest.pt"


def save_checkpoint(ckpt_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` as ``<ckpt_dir>/latest.pt``."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(Path(ckpt_dir) / LATEST, buf.getvalue())


def load_checkpoint(ckpt_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """Return the latest checkpoint in ``ckpt_dir``, or None if there is none (fresh start)."""
    if ckpt_dir is None:
        return None
    path = Path(ckpt_dir) / LATEST
    if not path.exists():
        return None
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict[str, Any]:
    """Torch and numpy RNG states as tensors/plain values (weights_only-safe)."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype("int64")), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))

"""Seeding and thread control.

Two 2-thread torch jobs on 2 cores run 20-120x slower than one (oversubscribed OpenMP threads),
so every stage sets torch's thread count from the rule's ``threads`` before any tensor work.
"""

from __future__ import annotations

import os
import random

import numpy as np


def configure_threads(threads: int) -> None:
    """Pin OpenMP/MKL and torch to ``threads`` threads (torch imported lazily: data stages may not need it)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:  # the data-only conda env has no torch
        torch = None
    if torch is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set once in this process
            pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy and torch; return a numpy Generator for code that prefers explicit RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    import torch

    torch.manual_seed(seed)
    return np.random.default_rng(seed)

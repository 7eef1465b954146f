"""2-D Gaussian mixtures used by the GAN mode-collapse papers (equal-weight, isotropic modes).

- ``ring8``: 8 modes on a circle of radius 2, covariance 0.02 I (std sqrt(0.02)); the standard
  toy of Unrolled GAN (Metz et al. 2017), VEEGAN and PacGAN.
- ``ring6``: 6 modes on a circle of radius 5, std 0.1.
- ``grid25``: 25 modes on the 5 x 5 grid {-4, -2, 0, 2, 4}^2, std 0.05, as in MGAN (Hoang et al.
  2018) / VEEGAN / PacGAN common practice.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from repro.common.io import atomic_savez

MIXTURES: dict[str, dict] = {
    "ring8": {"kind": "ring", "n_modes": 8, "radius": 2.0, "std": math.sqrt(0.02)},
    "ring6": {"kind": "ring", "n_modes": 6, "radius": 5.0, "std": 0.1},
    "grid25": {"kind": "grid", "positions": [-4.0, -2.0, 0.0, 2.0, 4.0], "std": 0.05},
}


def mixture_spec(name: str) -> dict:
    """``{"centers": ndarray[K, 2], "std": float}`` for one named mixture."""
    spec = MIXTURES[name]
    if spec["kind"] == "ring":
        a = 2 * np.pi * np.arange(spec["n_modes"]) / spec["n_modes"]
        centers = spec["radius"] * np.stack([np.cos(a), np.sin(a)], axis=1)
    else:
        g = np.asarray(spec["positions"])
        xx, yy = np.meshgrid(g, g, indexing="ij")
        centers = np.stack([xx.ravel(), yy.ravel()], axis=1)
    return {"centers": centers.astype(np.float64), "std": float(spec["std"])}


def sample_mixture(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples (float32 [n, 2]) and their mode indices (int64 [n]); modes equally likely."""
    spec = mixture_spec(name)
    modes = rng.integers(len(spec["centers"]), size=n)
    x = spec["centers"][modes] + spec["std"] * rng.standard_normal((n, 2))
    return x.astype(np.float32), modes.astype(np.int64)


def write_mixtures(out_dir: Path, cfg: dict, seed: int) -> dict:
    """Write ``<name>.npz`` (samples, labels, centers, std) for each mixture; returns a small summary."""
    out_dir = Path(out_dir)
    n = int(cfg["n_samples"])
    stats = {}
    for i, name in enumerate(sorted(MIXTURES)):
        x, labels = sample_mixture(name, n, np.random.default_rng([seed, i]))
        spec = mixture_spec(name)
        atomic_savez(out_dir / f"{name}.npz", samples=x, labels=labels, centers=spec["centers"], std=np.float64(spec["std"]))
        stats[name] = {"n_samples": n, "n_modes": len(spec["centers"]), "std": spec["std"]}
    return stats

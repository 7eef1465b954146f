"""Patch features for the inter-instance edges (1708.02901 Sec. 3.2): context-prediction or HOG.

* ``context``: the pooled trunk map of :class:`repro.graph.models.ContextNet`, trained on the mined
  patches by :func:`repro.graph.engine.train_context` (the paper: pool5 of a context-prediction
  VGG16 [9]).  Sub-patch sampling follows Doersch et al. 2015: a 3x3 grid of sub-patches with gaps
  and random jitter (so the net cannot solve the task by continuing edges across borders), each
  sub-patch mean-subtracted per channel.  Sub-patch side s = S // 4, jitter (S - 3 s) // 6 and the
  gap the rest, so gap >= 2 jitter and sub-patches never overlap (S = 32: 8 px sub-patches, 3 px
  gaps, +-1 px jitter; S = 96: 24, 8, +-4).
* ``hog``: scikit-image HOG of the grey patch (9 orientations, cells of S/4 px, 2x2 blocks) — the
  paper's weaker ablation (Table 2: 60.4 vs 63.2 mAP).

Both are L2-normalised, so the dot product is the cosine similarity the paper clusters on.
:func:`sample_context_batch` is public: the pretraining stage's ``context`` arm trains the detection
backbone on the same task with it and :func:`repro.graph.engine.train_context` (``repro.PUBLIC_API``).
"""

from __future__ import annotations

import numpy as np

# Neighbour offsets (dy, dx) in the 3x3 grid, indexed by the 8-way label (row-major, centre skipped).
OFFSETS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)], np.int64)


def l2_normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def grid_geometry(size: int) -> tuple[int, int, int]:
    """(sub-patch side, gap, max jitter) of the 3x3 context grid inside an ``size`` px patch."""
    sub = size // 4
    slack = size - 3 * sub
    jitter = slack // 6  # gap >= 2 * jitter: two jittered sub-patches never overlap
    gap = (slack - 2 * jitter) // 2
    if sub < 3:
        raise ValueError(f"patch_size {size} is too small for context prediction (needs >= 12)")
    return sub, gap, jitter


def context_corners(label: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Top-left corners (cy, cx, ny, nx) [B] of the centre and neighbour sub-patches for labels [B].

    Cell (r, c) of the 3x3 grid starts at jitter + (r, c) * (sub + gap), each sub-patch is shifted by
    an independent uniform jitter in [-jitter, jitter] (Doersch et al. 2015, Sec. 3)."""
    sub, gap, jitter = grid_geometry(size)
    step = sub + gap
    batch = len(label)
    jy, jx, ky, kx = rng.integers(-jitter, jitter + 1, (4, batch))
    cy, cx = jitter + step + jy, jitter + step + jx
    ny = jitter + (1 + OFFSETS[label, 0]) * step + ky
    nx = jitter + (1 + OFFSETS[label, 1]) * step + kx
    return cy, cx, ny, nx


def sample_context_batch(patches: np.ndarray, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Doersch-style training pairs from uint8 patches [N,3,S,S].

    Returns centre [B,3,s,s], neighbour [B,3,s,s] (float32, per-channel mean removed, /255) and
    the neighbour's position label [B] in 0..7 (see :data:`OFFSETS`).
    """
    n, _, size, _ = patches.shape
    sub = grid_geometry(size)[0]
    idx = rng.integers(0, n, batch)
    label = rng.integers(0, 8, batch)
    chosen = np.asarray(patches[np.sort(idx)])  # [B,3,S,S]; one gather (patches may be a memmap)
    cy, cx, ny, nx = context_corners(label, size, rng)
    ar = np.arange(sub)

    def crop(y0: np.ndarray, x0: np.ndarray) -> np.ndarray:
        rows = (y0[:, None] + ar)[:, None, :, None]  # [B,1,s,1]
        cols = (x0[:, None] + ar)[:, None, None, :]  # [B,1,1,s]
        b = np.arange(batch)[:, None, None, None]
        out = chosen[b, np.arange(3)[None, :, None, None], rows, cols].astype(np.float32) / 255.0
        return out - out.mean(axis=(2, 3), keepdims=True)  # [B,3,s,s]

    return crop(cy, cx), crop(ny, nx), label


def prepare_patches(patches: np.ndarray) -> np.ndarray:
    """Whole patches as the trunk sees them: float32 [N,3,S,S], /255, per-channel mean removed."""
    x = patches.astype(np.float32) / 255.0
    return x - x.mean(axis=(2, 3), keepdims=True)


def context_features(model, patches: np.ndarray, *, grid: int, device, rows: np.ndarray | None = None,
                     batch: int = 512) -> np.ndarray:
    """L2-normalised pooled trunk features [M, D] of uint8 patches [N,3,S,S] (``rows``: which, default all).

    Patches are read ``batch`` rows at a time, so ``patches`` may be a memory map larger than RAM."""
    import torch

    rows = np.arange(len(patches)) if rows is None else np.asarray(rows)
    model.eval()
    out = []
    for i in range(0, len(rows), batch):
        x = torch.from_numpy(prepare_patches(np.asarray(patches[rows[i:i + batch]]))).to(device)
        out.append(model.features(x, grid).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return l2_normalize(np.concatenate(out))


def hog_features(patches: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """L2-normalised HOG [M, D] of uint8 patches [N,3,S,S] (``rows``: which, default all; grey,
    9 orientations, S/4 px cells, 2x2 blocks)."""
    from skimage.feature import hog

    rows = np.arange(len(patches)) if rows is None else np.asarray(rows)
    if len(rows) == 0:
        return np.zeros((0, 0), np.float32)
    size = patches.shape[-1]
    cell = max(size // 4, 2)
    weights = np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]
    feats = []
    for i in range(0, len(rows), 4096):
        grey = (np.asarray(patches[rows[i:i + 4096]]).astype(np.float32) * weights).sum(1)
        feats += [hog(g, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2), feature_vector=True)
                  for g in grey]
    return l2_normalize(np.stack(feats))

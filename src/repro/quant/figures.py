"""The stage's figure: Fig. 1-style loss/accuracy against rate for every quantizer of one net."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from repro.common.io import atomic_savefig
from repro.quant import analysis as A
from repro.quant.analysis import METHOD_LABELS


def plot_net(path: Path, net: str, res: list[dict], cfg: dict) -> None:
    """Paper Fig. 1 layout: accuracy / test CE vs fixed-length bits and vs Huffman average length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ft = bool(cfg["finetune"]["enabled"])
    lines = A.curves(res, "dense", ft)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    colours = dict(zip(METHOD_LABELS, ["tab:blue", "tab:red", "tab:orange", "tab:brown", "tab:green", "tab:purple"]))
    base_acc = float(np.mean([r["dense"]["acc"] for r in res]))
    base_ce = float(np.mean([r["dense"]["ce"] for r in res]))
    for col, xkey in enumerate(("bits_fixed", "bits_huffman")):
        for row, metric in enumerate(("acc", "ce")):
            ax = axes[row, col]
            for method, pts in lines.items():
                pts = sorted(pts, key=lambda p: p[xkey])
                xs = [p[xkey] for p in pts]
                ax.plot(xs, [p[metric] for p in pts], "-o", ms=3, color=colours[method], label=METHOD_LABELS[method])
                if ft and all(f"{metric}_ft" in p for p in pts):
                    ax.plot(xs, [p[f"{metric}_ft"] for p in pts], "--", color=colours[method], alpha=0.7,
                            label=f"{METHOD_LABELS[method]} + fine-tuning")
            ax.axhline(base_acc if metric == "acc" else base_ce, color="k", lw=0.8, ls=":", label="unquantized")
            ax.grid(alpha=0.3)
            if metric == "ce":
                ax.set_yscale("log")
                ax.set_xlabel("fixed-length code bits ceil(log2 k)" if col == 0 else "Huffman average codeword length (bits)")
            ax.set_ylabel("test accuracy (%)" if metric == "acc" else "test cross-entropy (nats)")
            if metric == "acc":
                ax.set_ylim(max(0.0, base_acc - 40), min(100.0, base_acc + 3))
                ax.set_title(("(a) fixed-length codes" if col == 0 else "(b) Huffman codes") + f" - {net}")
            ax.set_xlim(0.5, 6.5)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Quantization of all layers together, mean over {len(res)} nets "
                 f"(x {cfg['kmeans']['inits']} k-means seedings)", fontsize=11)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    atomic_savefig(fig, path if path.suffix else path.with_suffix(".svg"))

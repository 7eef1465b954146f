"""The stage's figure: our FPN Tables 1 and 3 beside the paper's (``results/detect/fpn_tables.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.common.io import atomic_savefig


def plot_fpn(summary: dict[str, Any], path: Path) -> None:
    """Counterpart of FPN Tables 3 and 1: our AP and RPN AR per model (bars, 95% CI) beside the paper's (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in ("fpn", "c4", "c5", "fpn_no_topdown", "fpn_no_lateral", "fpn_p2_only")
              if m in summary["models"]]
    ref = summary["paper_reference"]
    panels = (("bbox", ("AP", "AP50", "AP_s", "AP_m", "AP_l"), "table3_faster_rcnn", "Faster R-CNN AP (Table 3)"),
              ("rpn", ("AR100", "AR1k", "AR1k_s", "AR1k_m", "AR1k_l"), "table1_rpn", "RPN recall (Table 1)"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / max(len(models), 1)
    for ax, (group, keys, table, title) in zip(axes, panels):
        for j, m in enumerate(models):
            entry = summary["models"][m]
            xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(keys))]
            ys = [max(entry[group][k] or 0.0, 0.0) for k in keys]
            cis = [entry[f"{group}_ci95"][k] for k in keys]
            err = [[y - c[0] if c else 0.0 for y, c in zip(ys, cis)], [c[1] - y if c else 0.0 for y, c in zip(ys, cis)]]
            ax.bar(xs, ys, width, yerr=err, capsize=2, label=f"{m} (ours)", color=f"C{j}", alpha=0.8)
            row = ref[table].get(entry.get("paper_row") or "", {})
            paper = [row.get(k) for k in keys]
            ax.scatter([x for x, p in zip(xs, paper) if p is not None], [p / 100 for p in paper if p is not None],
                       marker="D", color=f"C{j}", edgecolor="black", zorder=3, s=22)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("fraction (bars: ours, mean of seeds; diamonds: paper)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)

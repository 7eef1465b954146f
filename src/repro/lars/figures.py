"""The study's figure: top-1 accuracy vs batch size for both arms (ours above, the paper's Tables 1
and 3 below, its Table 5 on the right)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from repro.common.io import atomic_savefig

__all__ = ["plot_study"]

ARM_STYLE = {"sgd": ("SGD + warm-up, best LR per batch", "tab:red", "o"), "lars": ("LARS", "tab:blue", "s")}
TITLES = {"alexnet": "AlexNet (no BN)", "alexnet_bn": "AlexNet-BN"}


def _batch_label(b: float) -> str:
    return f"{int(b) // 1024}K" if b >= 4096 and int(b) % 1024 == 0 else str(int(b))


def _batch_axis(ax: Any, batches: list[float]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [_batch_label(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size")


def _errorbar(ax: Any, xs: list[float], cells: list[dict[str, Any]], **kw: Any) -> None:
    ys = [c["test_acc_mean"] for c in cells]
    lo = [c["test_acc_mean"] - c["test_acc_ci95"][0] if c["test_acc_ci95"] else 0.0 for c in cells]
    hi = [c["test_acc_ci95"][1] - c["test_acc_mean"] if c["test_acc_ci95"] else 0.0 for c in cells]
    ax.errorbar(xs, ys, yerr=[lo, hi], capsize=3, **kw)


def plot_study(
    summary: dict[tuple, dict[str, Any]],
    cfg: dict[str, Any],
    paper: dict[str, list[tuple[float, float]]],
    out_path: str | os.PathLike,
    *,
    dataset: str,
) -> None:
    """Write the figure to ``out_path`` (format from its suffix)."""
    models = list(cfg["models"])
    epochs = int(cfg["epochs"])
    b_hi = max(cfg["batches"])
    longer = cfg["longer"]
    ncols = len(models) + 1
    fig, axes = plt.subplots(2, ncols, figsize=(4.2 * ncols, 7.0), squeeze=False)
    for j, model in enumerate(models):
        ax, pax = axes[0, j], axes[1, j]
        paper_batches: set[float] = set()
        for arm, (label, colour, marker) in ARM_STYLE.items():
            cells = sorted(
                (c for c in summary.values() if c["model"] == model and c["arm"] == arm and c["epochs"] == epochs),
                key=lambda c: c["batch"],
            )
            cells = [c for c in cells if c["test_acc_mean"] is not None]
            if cells:
                _errorbar(ax, [c["batch"] for c in cells], cells, label=label, color=colour, marker=marker)
            pts = paper.get(f"{model}/{arm}", [])
            paper_batches.update(p[0] for p in pts)
            if pts:
                pax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, color=colour, marker=marker)
        ax.set_title(f"ours: {TITLES.get(model, model)}, {epochs} epoch{'s' if epochs > 1 else ''}")
        ax.set_ylabel(f"test top-1 (%), {dataset}\nmean and 95% CI over seeds")
        pax.set_title(f"paper: {TITLES.get(model, model)} (Tables 1, 3)")
        pax.set_ylabel("ImageNet top-1 (%)")
        wide = cfg.get("wide") or {}
        extra = wide.get("batches", []) if wide.get("model") == model else []
        _batch_axis(ax, sorted(set(cfg["batches"]) | set(extra)))
        _batch_axis(pax, sorted(paper_batches) or [512])
        for a in (ax, pax):
            a.grid(alpha=0.3)

    # Table 5: accuracy vs epochs at the largest batch.
    ax, pax = axes[0, -1], axes[1, -1]
    cells = sorted(
        (
            c
            for c in summary.values()
            if c["model"] == longer["model"] and c["arm"] == longer["arm"] and c["batch"] == b_hi
            and c["test_acc_mean"] is not None
        ),
        key=lambda c: c["epochs"],
    )
    if cells:
        _errorbar(ax, [c["epochs"] for c in cells], cells, color="tab:blue", marker="s",
                  label=f"{longer['arm'].upper()}, B={b_hi}")
    small = summary.get((longer["model"], longer["arm"], b_hi // 64, epochs))  # Table 5's 64x reference
    if small is not None and small["test_acc_mean"] is not None:
        ax.axhline(small["test_acc_mean"], color="tab:gray", ls="--", label=f"B={b_hi // 64}, {epochs} epochs")
    ax.set_title(f"ours: {TITLES.get(longer['model'], longer['model'])}, B={b_hi}")
    ax.set_ylabel("test top-1 (%)")
    pts = paper.get(f"{longer['model']}/{longer['arm']}/epochs", [])
    if pts:
        pax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", marker="s", label="LARS, B=32K")
    base = dict(paper.get(f"{longer['model']}/{longer['arm']}", [])).get(512.0)
    if base is not None:
        pax.axhline(base, color="tab:gray", ls="--", label="B=512, 100 epochs")
    pax.set_title("paper: AlexNet-BN, B=32K (Table 5)")
    pax.set_ylabel("ImageNet top-1 (%)")
    for a in (ax, pax):
        a.set_xlabel("epochs")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker=m, label=lbl) for lbl, c, m in ARM_STYLE.values()]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle("Large-batch training: accuracy vs batch size without and with LARS (1708.03888)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    atomic_savefig(fig, out_path, dpi=110)

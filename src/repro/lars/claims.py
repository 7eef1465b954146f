"""Summary of the study's cells and the claims rows (1708.03888 Tables 1, 3 and 5).

Every claim is a difference of top-1 test accuracy (percentage points) between two cells, paired by
seed (same seed = same initialisation and data order), at each cell's chosen LR; its mean and 95%
CI are over the seeds, and the verdict comes from the CI (``repro.common.claims.verdict_from_ci``):
- "drops" / "beats" / "recovers" claims hold when the whole CI is on the claimed side of 0;
- "holds accuracy" claims (LARS at the largest batch) hold when the whole CI is above
  ``-hold_tolerance_pp`` (default 1 pp, fixed before any run; the paper's own drops are 0.5 pp for
  AlexNet at 8K and 2.4 pp for AlexNet-BN at 32K) and fail when it is wholly below.
Our batch grid spans ``max/min`` of the configured batches (16x by default, the paper's 512 -> 8K for
AlexNet; its AlexNet-BN claim spans 64x, 512 -> 32K).
"""

from __future__ import annotations

from typing import Any

from repro.common.claims import ClaimRow, ci95, verdict_from_ci
from repro.common.paper_values import all_paper_values, paper_value

__all__ = ["build_claims", "paper_curves", "summarize_cells"]

PAPER = "LARS (You, Gitman, Ginsburg 2017, arXiv 1708.03888)"


def _cell_key(cell: dict[str, Any]) -> tuple[str, str, int, int]:
    return (cell["model"], cell["arm"], int(cell["batch"]), int(cell["epochs"]))


def summarize_cells(cells: list[dict[str, Any]]) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    """Per (model, arm, batch, epochs): the chosen LR, test accuracy per seed at it, mean and CI."""
    out: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for cell in cells:
        key = _cell_key(cell)
        if key in out:
            raise ValueError(f"duplicate study cell {key}")
        chosen = float(cell["chosen_lr_ref"])
        at_lr = [r for r in cell["runs"] if float(r["lr_ref"]) == chosen]
        by_seed = {int(r["seed"]): float(r["test_acc"]) for r in at_lr}
        mean, ci = ci95(list(by_seed.values()))
        grid = sorted({float(r["lr_ref"]) for r in cell["runs"] if int(r["seed"]) == int(cell["seeds"][0])})
        out[key] = {
            "model": key[0],
            "arm": key[1],
            "batch": key[2],
            "epochs": key[3],
            "chosen_lr_ref": chosen,
            "chosen_lr": float(at_lr[0]["lr"]) if at_lr else None,
            "test_acc_by_seed": by_seed,
            "test_acc_mean": mean,
            "test_acc_ci95": ci,
            "n_seeds": len(by_seed),
            "n_diverged": sum(bool(r["diverged"]) for r in cell["runs"]),
            "steps": int(at_lr[0]["steps"]) if at_lr else None,
            # the best LR is the smallest or largest of the grid: the optimum may lie outside it
            "chosen_at_grid_edge": len(grid) > 1 and chosen in (grid[0], grid[-1]),
            "lr_search": [
                {k: r[k] for k in ("lr_ref", "lr", "seed", "val_acc", "test_acc", "diverged")}
                for r in cell["runs"]
                if int(r["seed"]) == int(cell["seeds"][0])
            ],
        }
    return out


def _paired(
    summary: dict[tuple, dict[str, Any]], a: tuple, b: tuple
) -> tuple[float | None, list[float] | None, int, str]:
    """Mean and CI of acc(a) - acc(b) over the seeds both cells have; note on what is missing."""
    if a not in summary or b not in summary:
        missing = [k for k in (a, b) if k not in summary]
        return None, None, 0, f"cell(s) {missing} not in this study's config"
    sa, sb = summary[a]["test_acc_by_seed"], summary[b]["test_acc_by_seed"]
    seeds = sorted(set(sa) & set(sb))
    mean, ci = ci95([sa[s] - sb[s] for s in seeds])
    return mean, ci, len(seeds), ""


def _fmt(summary: dict[tuple, dict[str, Any]], key: tuple) -> str:
    cell = summary.get(key)
    if cell is None or cell["test_acc_mean"] is None:
        return "n/a"
    edge = ", at the edge of its LR grid" if cell["chosen_at_grid_edge"] else ""
    return f"{cell['test_acc_mean']:.1f}% (LR {cell['chosen_lr']:.3g}{edge}; {cell['steps']} steps)"


def build_claims(
    summary: dict[tuple, dict[str, Any]], cfg: dict[str, Any], *, scale_note: str
) -> list[ClaimRow]:
    """The stage's claims rows; ``scale_note`` describes what differs from the paper."""
    batches = sorted(cfg["batches"])
    b_lo, b_hi = batches[0], batches[-1]
    epochs = int(cfg["epochs"])
    tol = float(cfg["claims"]["hold_tolerance_pp"])
    longer = cfg["longer"]
    e_long = max(longer["epochs"]) if longer["epochs"] else None

    def cell(model: str, arm: str, batch: int, ep: int = epochs) -> tuple[str, str, int, int]:
        return (model, arm, batch, ep)

    specs = [
        # claim_id, cell a, cell b, threshold, higher_is_better, how the verdict is read
        ("lars_alexnet_sgd_drop", cell("alexnet", "sgd", b_hi), cell("alexnet", "sgd", b_lo), 0.0, False,
         f"acc(B={b_hi}) - acc(B={b_lo}), SGD + linear scaling + warm-up; holds if the CI is below 0"),
        ("lars_alexnet_lars_holds", cell("alexnet", "lars", b_hi), cell("alexnet", "lars", b_lo), -tol, True,
         f"acc(B={b_hi}) - acc(B={b_lo}), LARS; holds if the CI is above -{tol:g} pp"),
        ("lars_alexnet_lars_vs_sgd", cell("alexnet", "lars", b_hi), cell("alexnet", "sgd", b_hi), 0.0, True,
         f"acc(LARS) - acc(SGD) at B={b_hi}; holds if the CI is above 0"),
        ("lars_alexnet_bn_sgd_drop", cell("alexnet_bn", "sgd", b_hi), cell("alexnet_bn", "sgd", b_lo), 0.0, False,
         f"acc(B={b_hi}) - acc(B={b_lo}), SGD + linear scaling + warm-up; holds if the CI is below 0"),
        ("lars_alexnet_bn_lars_holds", cell("alexnet_bn", "lars", b_hi), cell("alexnet_bn", "lars", b_lo), -tol,
         True, f"acc(B={b_hi}) - acc(B={b_lo}), LARS; holds if the CI is above -{tol:g} pp"),
        ("lars_alexnet_bn_lars_vs_sgd", cell("alexnet_bn", "lars", b_hi), cell("alexnet_bn", "sgd", b_hi), 0.0,
         True, f"acc(LARS) - acc(SGD) at B={b_hi}; holds if the CI is above 0"),
    ]
    if e_long is not None:
        specs.append(
            ("lars_longer_training_recovers", cell(longer["model"], longer["arm"], b_hi, e_long),
             cell(longer["model"], longer["arm"], b_hi), 0.0, True,
             f"{longer['model']} {longer['arm']} at B={b_hi}: acc({e_long} epochs) - acc({epochs} epochs); "
             "holds if the CI is above 0")
        )
    rows = []
    for claim_id, a, b, threshold, higher, how in specs:
        ref = paper_value(claim_id)
        mean, ci, n, missing = _paired(summary, a, b)
        verdict = verdict_from_ci(ci, threshold=threshold, higher_is_better=higher)
        ours = f"ours: {_fmt(summary, a)} vs {_fmt(summary, b)}"
        note = f"{how}; {ours}. {missing + '. ' if missing else ''}{scale_note}"
        rows.append(
            ClaimRow(
                paper=PAPER,
                claim_id=claim_id,
                claim=ref["claim"],
                metric=f"top-1 test accuracy difference, percentage points ({ref['where']})",
                paper_value=float(ref["value"]),
                ours_mean=mean,
                ours_ci95=ci,
                n_seeds=n,
                verdict=verdict,
                scale_note=note,
            )
        )
    return rows


def paper_curves() -> dict[str, list[tuple[float, float]]]:
    """The paper's accuracy curves from paper_values/lars.yaml (entries with ``series`` and ``x``):
    ``{"alexnet/sgd": [(batch, acc), ...], ..., "alexnet_bn/lars/epochs": [(epochs, acc), ...]}``."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for entry in all_paper_values().values():
        if entry.get("stage") == "lars" and "series" in entry:
            curves.setdefault(entry["series"], []).append((float(entry["x"]), float(entry["value"])))
    return {k: sorted(v) for k, v in curves.items()}

"""What the large-batch study runs: its cells and the learning rates each cell searches.

A cell is (model, arm, batch, epochs): the main grid (every model and arm at every batch, Tables 1 and 3),
smaller batches for one model and arm so it spans the paper's 64x (``wide``), and longer runs at the largest
batch (``longer``, Table 5). Each searches the best LR per batch (Table 1 text). Pure Python, so the
workflow's rules, the study and the report (the price of a run counts its runs) share one definition.
"""

from __future__ import annotations

import math
from typing import Any

from repro.lars import ARMS


def scaled_lr(lr_ref: float, batch: int, ref_batch: int, scaling: str) -> float:
    """The arm's LR at batch B from its value at ``ref_batch``: linear (Goyal et al.), sqrt or none."""
    ratio = batch / ref_batch
    if scaling == "linear":
        return lr_ref * ratio
    if scaling == "sqrt":
        return lr_ref * math.sqrt(ratio)
    if scaling == "none":
        return lr_ref
    raise ValueError(f"unknown LR scaling {scaling!r} (linear | sqrt | none)")


def lr_grid(arm_cfg: dict[str, Any], model_name: str) -> list[float]:
    """The arm's search grid at ``ref_batch`` for ``model_name``: every ``lr * f`` (``lrs`` times
    ``lr_factors``), sorted, duplicates removed; the cell scales it to its batch with ``scaling``.
    With linear scaling, f < 1 puts the LR below the linearly scaled one by that factor."""
    grid = arm_cfg["lrs"].get(model_name)
    if not grid:
        raise ValueError(f"no LR grid for model {model_name!r}")
    factors = arm_cfg.get("lr_factors") or [1.0]
    return sorted({_rounded(float(lr) * float(f)) for lr in grid for f in factors})


def beyond_edge(tried: list[float], chosen: float | None) -> float | None:
    """The next LR past the edge of the searched LRs when the best one is that edge, else None.

    A best LR at the smallest (largest) LR tried says the optimum may lie below (above) the grid; the
    search then continues geometrically with the grid's own step there (lo^2 / next-lowest, hi^2 /
    next-highest), both arms alike, up to ``edge_steps`` times per cell.
    """
    grid = sorted(tried)
    if chosen is None or len(grid) < 2:
        return None
    if chosen == grid[0]:
        return _rounded(grid[0] ** 2 / grid[1])
    if chosen == grid[-1]:
        return _rounded(grid[-1] ** 2 / grid[-2])
    return None


def _rounded(lr: float) -> float:
    """An LR to 6 significant digits, so grid points computed two ways compare equal."""
    return float(f"{lr:.6g}")


def cells(cfg: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """Every cell of the study (``lars`` section), in order, without duplicates; every model has its LR grids."""
    longer, wide = cfg["longer"], cfg["wide"]
    for model in [*cfg["models"], *[longer["model"]] * bool(longer["epochs"]), *[wide["model"]] * bool(wide["batches"])]:
        for arm in ARMS:
            if model not in cfg[arm]["lrs"]:
                raise ValueError(f"config key 'lars.{arm}.lrs.{model}' is missing: model {model!r} needs an LR grid")
    grid = [(m, a, b, cfg["epochs"]) for m in cfg["models"] for a in ARMS for b in cfg["batches"]]
    grid += [(wide["model"], wide["arm"], b, cfg["epochs"]) for b in wide["batches"]]
    grid += [(longer["model"], longer["arm"], max(cfg["batches"]), e) for e in longer["epochs"]]
    return list(dict.fromkeys(grid))


def runs_of(cfg: dict[str, Any], model: str, arm: str) -> int:
    """Training runs of one cell: its LR search on the first seed, then the other seeds at the chosen LR."""
    return len(lr_grid(cfg[arm], model)) + int(cfg["seeds"]) - 1

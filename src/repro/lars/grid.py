"""The learning rates a cell of the large-batch study searches (1708.03888 Table 1 text: the best LR per batch).

Pure Python, so the workflow and the report (the price of a run counts the runs) can read it without torch.
"""

from __future__ import annotations

import math
from typing import Any


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
    return sorted({float(f"{float(lr) * float(f):.6g}") for lr in grid for f in factors})

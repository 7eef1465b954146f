"""Benchmarks of the pipeline's time budget and of each stage against the reference a user would pick.

``python -m bench`` (or ``make bench``) runs them all and writes ``results/bench.json`` and
``results/bench.png``; see :mod:`bench.__main__`. Each benchmark module has a ``run(...) -> list[dict]``
returning rows made by :func:`row`, and keeps its own command line (``python -m bench.<name>``).

Every row times the project's code and a reference doing the same work *in the same run* and stores
the ratio ``ours / reference``, so the figure holds on a shared, noisy machine even where the
absolute times do not. Rows: ``name, ours, reference, ratio, unit, machine, goal, met`` plus
``reference_name`` (what the reference is) and ``details`` (per-rule times, sizes, ...).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

__all__ = ["GOAL_OPS", "best_of", "machine", "row", "timed"]

#: how a goal compares a value with its threshold
GOAL_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _static_machine() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "python": platform.python_version(),
    }


def machine(device: str | None = None) -> dict[str, Any]:
    """CPU model, cores, torch version, the device the row ran on, and the load average right now.

    The load average says how busy the (possibly shared) machine was while the row was measured.
    """
    out = dict(_static_machine())
    if device is not None:
        out["device"] = device
    try:
        out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on Linux
        pass
    return out


def row(name: str, *, ours: float, reference: float | None, unit: str, reference_name: str,
        goal_on: str, goal_op: str, goal: float, goal_text: str | None = None, ratio: float | None = None,
        device: str | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """One result row. ``ratio`` defaults to ``ours / reference``; the goal is ``<goal_on> <goal_op> <goal>``.

    ``goal_on`` is ``"ours"`` (an absolute budget such as a wall time) or ``"ratio"`` (relative to the
    reference measured in the same run).
    """
    if goal_on not in ("ours", "ratio"):
        raise ValueError(f"goal_on must be 'ours' or 'ratio', got {goal_on!r}")
    if ratio is None:
        ratio = ours / reference if reference else float("nan")
    value = ours if goal_on == "ours" else ratio
    return {
        "name": name,
        "ours": float(ours),
        "reference": None if reference is None else float(reference),
        "ratio": float(ratio),
        "unit": unit,
        "reference_name": reference_name,
        "machine": machine(device),
        "goal": goal_text or f"{goal_on} {goal_op} {goal:g}",
        "goal_on": goal_on,
        "goal_op": goal_op,
        "goal_value": float(goal),
        "met": bool(GOAL_OPS[goal_op](value, goal)),
        "details": details or {},
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time over ``repeats`` calls (the least disturbed by other jobs) and the last result."""
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        t, out = timed(fn)
        best = min(best, t)
    return best, out

"""The family of claims: does each decisive verdict survive a Holm correction over the paper's
claims and over the whole table?"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from repro.common.claims import ALPHA


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65-70): with the m p-values
    sorted ascending, p_adj(i) = max over j <= i of min(1, (m - j + 1) p(j)); a hypothesis is rejected at
    level alpha exactly when p_adj < alpha, which controls the family-wise error rate at alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def add_holm(claims: pd.DataFrame) -> pd.DataFrame:
    """Columns ``holm_paper`` and ``holm_table``: for a holds/fails row with a p-value, whether it
    survives Holm at ALPHA over the paper's rows with a p-value, or over every such row of the table
    (True/False); None for rows with no decisive verdict or no p-value. Every row with a p-value is
    in the family, inconclusive ones included: each is a test that was run."""
    out = claims.copy()
    tested = out["p_value"].notna() & (out["status"] == "measured")
    decisive = tested & out["verdict"].isin(("holds", "fails"))
    for column, groups in (("holm_paper", out[tested].groupby("paper").groups.values()), ("holm_table", [out.index[tested]])):
        adjusted = pd.Series(float("nan"), index=out.index)
        for idx in groups:
            adjusted[idx] = holm_adjusted(out.loc[idx, "p_value"].astype(float).tolist())
        out[column] = [bool(adjusted[i] < ALPHA) if decisive[i] else None for i in out.index]
    return out

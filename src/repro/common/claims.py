"""The claims contract: every stage writes ``results/claims/<stage>.json``.

The file is a JSON list of rows with exactly the keys of :class:`ClaimRow`. The report stage
collects them; nothing else about a stage's internals leaks into the report.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

from repro.common.io import atomic_write_json, read_json

VERDICTS = ("holds", "fails", "inconclusive")


@dataclass(frozen=True)
class ClaimRow:
    """One paper claim beside our measurement.

    ``paper`` is the arXiv id; writing normalises a label such as "FPN (arXiv 1612.03144)" to it.

    ``ours_ci95`` is ``[low, high]`` of a 95% confidence interval of the mean over ``n_seeds``
    seeds (Student's t); ``None`` where it cannot be computed (one seed, or not run).
    """

    paper: str
    claim_id: str
    claim: str
    metric: str
    paper_value: float | None
    ours_mean: float | None
    ours_ci95: list[float] | None
    n_seeds: int
    verdict: str
    scale_note: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.claim_id!r}: verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.ours_ci95 is not None and len(self.ours_ci95) != 2:
            raise ValueError(f"claim {self.claim_id!r}: ours_ci95 must be [low, high]")
        if self.n_seeds < 0:
            raise ValueError(f"claim {self.claim_id!r}: n_seeds must be >= 0")


CLAIM_KEYS = tuple(f.name for f in fields(ClaimRow))


def ci95(values: Sequence[float]) -> tuple[float | None, list[float] | None]:
    """Mean and Student-t 95% CI of the mean; CI is None with fewer than two finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    half = float(stats.t.ppf(0.975, len(vals) - 1)) * sd / math.sqrt(len(vals))
    return mean, [mean - half, mean + half]


def verdict_from_ci(ci: Sequence[float] | None, *, threshold: float = 0.0, higher_is_better: bool = True) -> str:
    """'holds' if the whole CI is on the claimed side of ``threshold``, 'fails' if wholly on the
    other side, 'inconclusive' if it straddles it or is missing."""
    if ci is None:
        return "inconclusive"
    low, high = float(ci[0]), float(ci[1])
    if not higher_is_better:
        low, high, threshold = -high, -low, -threshold
    if low > threshold:
        return "holds"
    if high < threshold:
        return "fails"
    return "inconclusive"


def validate_rows(rows: Iterable[dict[str, Any]], *, source: str = "claims") -> list[dict[str, Any]]:
    """Check that every row has exactly the contract's keys and valid values."""
    out = []
    for i, row in enumerate(rows):
        keys = set(row)
        if keys != set(CLAIM_KEYS):
            missing = sorted(set(CLAIM_KEYS) - keys)
            extra = sorted(keys - set(CLAIM_KEYS))
            raise ValueError(f"{source}: row {i} has missing keys {missing} and unexpected keys {extra}")
        from repro.common.paper_values import arxiv_id

        out.append(asdict(ClaimRow(**{**row, "paper": arxiv_id(row["paper"])})))
    return out


def write_claims(path: str | os.PathLike, rows: Iterable[ClaimRow | dict[str, Any]]) -> None:
    """Validate and atomically write the claims list for one stage."""
    dicts = [asdict(r) if isinstance(r, ClaimRow) else dict(r) for r in rows]
    atomic_write_json(path, validate_rows(dicts, source=os.fspath(path)))


def read_claims(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and validate a stage's claims file."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a claims file must be a JSON list of rows")
    return validate_rows(data, source=os.fspath(path))

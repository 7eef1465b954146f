"""The claims contract: every stage writes ``results/claims/<stage>.json``.

The file is a JSON list of rows with exactly the keys of :class:`ClaimRow`. The report stage
collects them; nothing else about a stage's internals leaks into the report.

A row's verdict comes from one test over its replicates (seeds), run by :func:`one_sample_test`,
:func:`welch_test` or :func:`equivalence_test`; the same call gives the row's p-value and its power
figures, so every stage fills them the same way.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Sequence

from repro.common.io import atomic_write_json, read_json

VERDICTS = ("holds", "fails", "inconclusive")
# "t": one-sample Student t of the per-seed values against ``threshold``; "welch": difference of two
# arms' means (Welch); "equivalence": two one-sided tests against +-``threshold``; "none": no test
# (a count at our scale, a composite of other rows, not run); "unknown": a claims file written before
# the contract carried the test (read, never written by a stage).
TESTS = ("t", "welch", "equivalence", "none", "unknown")
ALPHA = 0.05  # the verdict's 95% CI: holds or fails exactly when the row's p-value is below ALPHA
POWER = 0.80
N_MAX = 1000  # seeds beyond which ``n_needed`` is left empty ("more than N_MAX")
UNDERPOWERED, NO_EFFECT, NO_TEST = "underpowered", "no effect at this power", "no test"


@dataclass(frozen=True)
class ClaimRow:
    """One paper claim beside our measurement.

    ``paper`` is the arXiv id; writing normalises a label such as "FPN (arXiv 1612.03144)" to it.

    ``ours_ci95`` is ``[low, high]`` of a 95% confidence interval of the mean over ``n_seeds``
    seeds (Student's t, or Welch's for a difference of two arms); ``None`` where it cannot be computed
    (one seed, or not run). The verdict compares it with ``threshold`` on the claimed side
    (``higher_is_better``), or with ``[-threshold, threshold]`` for an equivalence claim.

    The test fields (filled by the ``*_test`` functions): ``test`` (one of :data:`TESTS`);
    ``ours_sd``, the standard deviation of one seed's contribution to the tested difference, so its
    standard error is ``ours_sd / sqrt(n_seeds)``; ``p_value``, two-sided, below :data:`ALPHA`
    exactly when the verdict is holds or fails; ``mde``, the smallest distance from the threshold the
    run detects with 80% power; ``n_needed``, the seeds a decisive verdict needs with 80% power if the
    observed effect and spread stay (None: fewer than 2 seeds, a zero effect, or more than
    :data:`N_MAX`).
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
    test: str = "none"
    threshold: float | None = None
    higher_is_better: bool = True
    ours_sd: float | None = None
    p_value: float | None = None
    mde: float | None = None
    n_needed: int | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.claim_id!r}: verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.ours_ci95 is not None and len(self.ours_ci95) != 2:
            raise ValueError(f"claim {self.claim_id!r}: ours_ci95 must be [low, high]")
        if self.n_seeds < 0:
            raise ValueError(f"claim {self.claim_id!r}: n_seeds must be >= 0")
        if self.test not in TESTS:
            raise ValueError(f"claim {self.claim_id!r}: test must be one of {TESTS}, got {self.test!r}")
        if self.p_value is not None and not 0.0 <= self.p_value <= 1.0:
            raise ValueError(f"claim {self.claim_id!r}: p_value must be in [0, 1], got {self.p_value}")


CLAIM_KEYS = tuple(f.name for f in fields(ClaimRow))
TEST_KEYS = CLAIM_KEYS[CLAIM_KEYS.index("test"):]
LEGACY_KEYS = CLAIM_KEYS[: CLAIM_KEYS.index("test")]  # the contract before the test fields


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _sd(vals: list[float]) -> float:
    mean = sum(vals) / len(vals)
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def ci95(values: Sequence[float]) -> tuple[float | None, list[float] | None]:
    """Mean and Student-t 95% CI of the mean; CI is None with fewer than two finite values."""
    vals = _finite(values)
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    from scipy import stats

    half = float(stats.t.ppf(1 - ALPHA / 2, len(vals) - 1)) * _sd(vals) / math.sqrt(len(vals))
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


def equivalence_verdict(ci: Sequence[float] | None, margin: float) -> str:
    """'holds' if the CI lies inside [-margin, margin], 'fails' if wholly outside, else inconclusive."""
    if ci is None:
        return "inconclusive"
    lo, hi = float(ci[0]), float(ci[1])
    if -margin <= lo and hi <= margin:
        return "holds"
    if lo > margin or hi < -margin:
        return "fails"
    return "inconclusive"


def t_power(delta: float, se: float, df: float) -> float:
    """Power of the two-sided level-ALPHA t test when the true distance from the null is ``delta``
    and the estimate's standard error is ``se``: P(|T| > t_crit) with T noncentral t(df, delta / se)
    (e.g. Cohen 1988, Statistical Power Analysis, ch. 2)."""
    from scipy import stats

    crit = float(stats.t.ppf(1 - ALPHA / 2, df))
    nc = abs(delta) / se
    upper, lower = float(stats.nct.sf(crit, df, nc)), float(stats.nct.cdf(-crit, df, nc))
    # far in the tail scipy's noncentral t returns NaN for a probability that is 1 (upper) or 0 (lower)
    return min(1.0, (1.0 if math.isnan(upper) else upper) + (0.0 if math.isnan(lower) else lower))


def _mde(se: float, df: float) -> float:
    """Smallest distance detected with POWER (t_power is increasing in it)."""
    from scipy.optimize import brentq

    hi = se
    while t_power(hi, se, df) < POWER:
        hi *= 2
    return float(brentq(lambda d: t_power(d, se, df) - POWER, 0.0, hi, xtol=se * 1e-6))


def _n_needed(delta: float, sd: float, df_of_n: Callable[[int], float]) -> int | None:
    """Fewest seeds n >= 2 with power >= POWER at ``delta`` and standard error sd / sqrt(n)."""
    if delta == 0:
        return None
    if sd == 0:
        return 2
    ok = lambda n: t_power(delta, sd / math.sqrt(n), df_of_n(n)) >= POWER  # noqa: E731
    if not ok(N_MAX):
        return None
    lo, hi = 1, N_MAX  # ok(hi), and n = lo is too few (a variance needs 2 seeds)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mid >= 2 and ok(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class TestResult:
    """What one claim's test gives: the ClaimRow fields from ``ours_mean`` on (:meth:`fields`)."""

    ours_mean: float | None
    ours_ci95: list[float] | None
    n_seeds: int
    verdict: str
    test: str
    threshold: float | None
    higher_is_better: bool
    ours_sd: float | None
    p_value: float | None
    mde: float | None
    n_needed: int | None

    def fields(self) -> dict[str, Any]:
        """Keyword arguments for :class:`ClaimRow`."""
        return asdict(self)


def _result(mean: float | None, ci: list[float] | None, n: int, verdict: str, test: str, threshold: float,
            higher: bool, sd: float | None, distance: float | None, df_of_n: Callable[[int], float]) -> TestResult:
    """Fill p-value and power from the distance of the mean from the decision boundary."""
    from scipy import stats

    p = mde = need = None
    if sd is not None and distance is not None:
        if sd == 0:
            p, mde = (0.0 if distance else 1.0), 0.0
        else:
            se = sd / math.sqrt(n)
            p = min(1.0, 2 * float(stats.t.sf(abs(distance) / se, df_of_n(n))))
            mde = _mde(se, df_of_n(n))
        need = _n_needed(distance, sd, df_of_n)
    return TestResult(mean, ci, n, verdict, test, threshold, higher, sd, p, mde, need)


def one_sample_test(values: Sequence[float | None], *, threshold: float = 0.0,
                    higher_is_better: bool = True) -> TestResult:
    """Student t of the finite per-seed ``values`` against ``threshold``: mean, 95% CI
    (:func:`ci95`), verdict (:func:`verdict_from_ci`), two-sided p-value and power (df = n - 1)."""
    vals = _finite(values)
    mean, ci = ci95(vals)
    sd = _sd(vals) if len(vals) >= 2 else None
    distance = None if mean is None else mean - threshold
    return _result(mean, ci, len(vals), verdict_from_ci(ci, threshold=threshold, higher_is_better=higher_is_better),
                   "t", threshold, higher_is_better, sd, distance, lambda n: n - 1)


def welch_test(a: Sequence[float | None], b: Sequence[float | None], *, threshold: float = 0.0,
               higher_is_better: bool = True) -> TestResult:
    """Mean of ``a`` minus mean of ``b`` against ``threshold`` with Welch's 95% CI and
    Welch-Satterthwaite degrees of freedom (Welch 1947). ``n_seeds`` is the smaller arm; power assumes n
    seeds per arm, so ``ours_sd`` is sqrt(sd_a^2 + sd_b^2) and the df at n are
    (sa^2 + sb^2)^2 (n - 1) / (sa^4 + sb^4)."""
    from scipy import stats

    a, b = _finite(a), _finite(b)
    n = min(len(a), len(b))
    if not a or not b:
        return _result(None, None, n, "inconclusive", "welch", threshold, higher_is_better, None, None, lambda k: k - 1)
    d = sum(a) / len(a) - sum(b) / len(b)
    if n < 2:
        return _result(d, None, n, "inconclusive", "welch", threshold, higher_is_better, None, None, lambda k: k - 1)
    sa2, sb2 = _sd(a) ** 2, _sd(b) ** 2
    va, vb = sa2 / len(a), sb2 / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va**2 / (len(a) - 1)) + (vb**2 / (len(b) - 1))) if se else 1.0
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    ci = [d - half, d + half]
    sd = math.sqrt(sa2 + sb2)
    df_at = (lambda k: (sa2 + sb2) ** 2 * (k - 1) / (sa2**2 + sb2**2)) if sd else (lambda k: k - 1)
    result = _result(d, ci, n, verdict_from_ci(ci, threshold=threshold, higher_is_better=higher_is_better), "welch",
                     threshold, higher_is_better, sd, d - threshold, df_at)
    if sd:  # the p-value at the arms' own sizes and Welch df, so that it agrees with the CI
        p = min(1.0, 2 * float(stats.t.sf(abs(d - threshold) / se, df)))
        result = TestResult(**{**result.fields(), "p_value": p})
    return result


def equivalence_test(values: Sequence[float | None], *, margin: float) -> TestResult:
    """Equivalence within +-``margin`` by two one-sided t tests (Schuirmann 1987) read off the 95% CI:
    holds if the CI lies inside [-margin, margin], fails if wholly outside (:func:`equivalence_verdict`).
    The p-value is 2 min(p_holds, p_fails), with p_holds the larger of the two one-sided p-values for
    "inside" and p_fails the smaller for "outside", so p < ALPHA exactly when the verdict is decisive.
    Power is that of the nearer bound's test (distance margin - |mean|); the farther bound's test is
    taken as passed, which overstates power by at most its own failure rate."""
    from scipy import stats

    vals = _finite(values)
    mean, ci = ci95(vals)
    n = len(vals)
    sd = _sd(vals) if n >= 2 else None
    distance = None if mean is None else margin - abs(mean)
    result = _result(mean, ci, n, equivalence_verdict(ci, margin), "equivalence", margin, True, sd, distance,
                     lambda k: k - 1)
    if sd:
        se, df = sd / math.sqrt(n), n - 1
        p_holds = max(stats.t.sf((mean + margin) / se, df), stats.t.sf((margin - mean) / se, df))
        p_fails = min(stats.t.sf((mean - margin) / se, df), stats.t.sf((-margin - mean) / se, df))
        result = TestResult(**{**result.fields(), "p_value": min(1.0, 2 * float(min(p_holds, p_fails)))})
    return result


def inconclusive_reason(row: dict[str, Any]) -> str:
    """Why an inconclusive row is so: :data:`UNDERPOWERED`, :data:`NO_EFFECT` or :data:`NO_TEST`
    ("" for a decisive verdict; "power unknown" for a file written before the test fields).

    The rule: the reference effect is the paper's value's distance from the threshold on the claimed
    side (for an equivalence claim, the margin minus the paper's |value|). With one, the row is
    underpowered when its minimum detectable effect (``mde``, 80% power) exceeds it: the run could
    not have seen the paper's effect; otherwise the run could have seen it and did not: no effect at
    this power. Without one (no paper value, a value in other units on the wrong side, or the paper's
    value at the threshold), the only effect at hand is the observed one, which an inconclusive CI
    never detects: underpowered with the seeds it would need, or no effect at this power when no
    number of seeds up to N_MAX would settle it (an observed effect at or next to the threshold).
    Fewer than two seeds give no variance: underpowered."""
    if row["verdict"] != "inconclusive":
        return ""
    if row["test"] == "unknown":
        return "power unknown"
    if row["test"] == "none" or row["ours_mean"] is None:
        return NO_TEST
    if row["mde"] is None:
        return UNDERPOWERED
    ref, pv, thr = None, row["paper_value"], row["threshold"]
    if pv is not None and thr is not None and math.isfinite(float(pv)):
        if row["test"] == "equivalence":
            ref = thr - abs(float(pv))
        else:
            ref = (float(pv) - thr) if row["higher_is_better"] else (thr - float(pv))
    if ref is not None and ref > 0:
        return UNDERPOWERED if row["mde"] > ref else NO_EFFECT
    return UNDERPOWERED if row["n_needed"] is not None else NO_EFFECT


def validate_rows(rows: Iterable[dict[str, Any]], *, source: str = "claims") -> list[dict[str, Any]]:
    """Check that every row has exactly the contract's keys and valid values. A row with exactly the
    keys of the contract before the test fields (:data:`LEGACY_KEYS`) is read with ``test`` "unknown"."""
    from repro.common.paper_values import arxiv_id

    out = []
    for i, row in enumerate(rows):
        keys = set(row)
        if keys == set(LEGACY_KEYS):
            row = {**row, "test": "unknown"}
        elif keys != set(CLAIM_KEYS):
            missing = sorted(set(CLAIM_KEYS) - keys)
            extra = sorted(keys - set(CLAIM_KEYS))
            raise ValueError(f"{source}: row {i} has missing keys {missing} and unexpected keys {extra}"
                             f" (a row has the keys {list(CLAIM_KEYS)}, or those up to 'scale_note' in a file"
                             " written before the test fields)")
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

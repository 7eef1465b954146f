"""The claims contract's tests and power figures (repro.common.claims) and the Holm family (repro.report.family)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from repro.common.claims import (
    ALPHA,
    NO_EFFECT,
    NO_TEST,
    POWER,
    UNDERPOWERED,
    ClaimRow,
    equivalence_test,
    equivalence_verdict,
    inconclusive_reason,
    one_sample_test,
    read_claims,
    t_power,
    welch_test,
    write_claims,
)
from repro.report.family import holm_adjusted


@pytest.mark.parametrize("seed", range(6))
def test_one_sample_p_value_is_scipys_and_agrees_with_the_ci_verdict(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, thr = int(rng.integers(2, 7)), float(rng.normal())
    values = rng.normal(thr + rng.normal(), rng.uniform(0.1, 2.0), n)
    for higher in (True, False):
        t = one_sample_test(values, threshold=thr, higher_is_better=higher)
        assert t.p_value == pytest.approx(stats.ttest_1samp(values, thr).pvalue, rel=1e-9)
        assert (t.p_value < ALPHA) == (t.verdict != "inconclusive")
        assert t.ours_sd == pytest.approx(np.std(values, ddof=1)) and t.n_seeds == n


def test_mde_and_n_needed_are_where_power_crosses_80_percent() -> None:
    t = one_sample_test([0.10, 0.25, 0.05, 0.18])
    se = t.ours_sd / 2
    assert t_power(t.mde, se, 3) == pytest.approx(POWER, abs=1e-6)
    n = t.n_needed
    assert t_power(t.ours_mean, t.ours_sd / math.sqrt(n), n - 1) >= POWER
    assert t_power(t.ours_mean, t.ours_sd / math.sqrt(n - 1), n - 2) < POWER
    # large n: the normal approximation (z_0.975 + z_0.8) * se
    big = one_sample_test(list(np.random.default_rng(0).normal(0, 1, 400)))
    assert big.mde == pytest.approx(2.8016 * big.ours_sd / 20, rel=0.01)


def test_edge_cases_one_seed_zero_spread_zero_effect() -> None:
    one = one_sample_test([0.3])
    assert one.verdict == "inconclusive" and one.p_value is None and one.mde is None and one.n_needed is None
    flat = one_sample_test([8.0] * 5, threshold=7.5)
    assert flat.verdict == "holds" and flat.p_value == 0.0 and flat.n_needed == 2
    assert one_sample_test([0.1, -0.1]).n_needed is None  # observed effect exactly 0: no number of seeds settles it
    assert one_sample_test([float("nan"), 1.0, 2.0]).n_seeds == 2


def test_welch_matches_scipy() -> None:
    a, b = [3.0, 5.0, 4.0, 6.0, 5.0], [1.0, 2.0, 4.0, 1.0]
    t = welch_test(a, b)
    assert t.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert t.ours_ci95 == pytest.approx([ci.low, ci.high]) and t.n_seeds == 4 and t.verdict == "holds"
    assert welch_test(a, b, higher_is_better=False).verdict == "fails"
    assert welch_test([1.0], [2.0]).ours_ci95 is None and welch_test([], [1.0]).ours_mean is None


@pytest.mark.parametrize("values", [[0.01, -0.02, 0.03, 0.0, -0.01], [0.2, 0.22, 0.19], [0.04, -0.03, 0.06],
                                    [-0.3, 0.2, 0.1, -0.2]])
def test_equivalence_p_value_is_below_alpha_exactly_when_decisive(values: list[float]) -> None:
    t = equivalence_test(values, margin=0.05)
    assert t.verdict == equivalence_verdict(t.ours_ci95, 0.05)
    assert (t.p_value < ALPHA) == (t.verdict != "inconclusive")


def _row(**kw) -> dict:
    base = dict(paper="1612.03144", claim_id="x", claim="c", metric="m", paper_value=0.5, scale_note="n")
    return {**base, **kw}


def test_inconclusive_splits_by_the_papers_effect_then_the_observed_one() -> None:
    t = one_sample_test([0.02, -0.01, 0.04])  # MDE about 0.1
    assert t.verdict == "inconclusive" and 0.05 < t.mde < 0.5
    assert inconclusive_reason(_row(paper_value=0.5, **t.fields())) == NO_EFFECT  # the paper's 0.5 was detectable
    assert inconclusive_reason(_row(paper_value=0.01, **t.fields())) == UNDERPOWERED  # 0.01 was not
    assert inconclusive_reason(_row(paper_value=None, **t.fields())) == UNDERPOWERED  # observed effect, n needed
    assert inconclusive_reason(_row(paper_value=-0.5, **t.fields())) == UNDERPOWERED  # paper on the other side
    flat = one_sample_test([0.1, -0.1])
    assert inconclusive_reason(_row(paper_value=None, **flat.fields())) == NO_EFFECT
    counted = dict(ours_mean=3.0, ours_ci95=None, n_seeds=1, verdict="inconclusive")
    assert inconclusive_reason(_row(**counted, test="none")) == NO_TEST
    assert inconclusive_reason(_row(**one_sample_test([0.1, 0.2, 0.15]).fields())) == ""


def test_old_claims_files_are_read_and_a_half_new_row_is_a_clear_error(tmp_path: Path) -> None:
    old = _row(ours_mean=0.1, ours_ci95=[0.0, 0.2], n_seeds=2, verdict="inconclusive")
    (tmp_path / "old.json").write_text(json.dumps([old]))
    row = read_claims(tmp_path / "old.json")[0]
    assert row["test"] == "unknown" and row["p_value"] is None
    assert inconclusive_reason(row) == "power unknown"
    with pytest.raises(ValueError, match="missing keys .*'ours_sd'.*before the test fields"):
        write_claims(tmp_path / "half.json", [{**old, "test": "t", "threshold": 0.0}])
    with pytest.raises(ValueError, match="test must be one of"):
        write_claims(tmp_path / "bad.json", [_row(**one_sample_test([1, 2]).fields()) | {"test": "z"}])


def test_rows_roundtrip_with_their_test_fields(tmp_path: Path) -> None:
    t = welch_test([1.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    write_claims(tmp_path / "c.json", [ClaimRow(**_row(**t.fields()))])
    back = read_claims(tmp_path / "c.json")[0]
    assert back["test"] == "welch" and back["p_value"] == pytest.approx(t.p_value) and back["n_needed"] == t.n_needed


def test_holm_step_down() -> None:
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([]) == [] and holm_adjusted([0.9]) == [0.9]

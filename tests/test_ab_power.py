"""The power `ab` states is the power of the test it makes: Benjamini–Hochberg over all its cases, checked
against simulated comparisons whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sepbench.ab import stats as ab_stats


def _table(se: np.ndarray, pairs: int, shift: np.ndarray | float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A comparison's case table as `case_table` makes it, from `pairs` worker pairs per case whose log
    ratios scatter by se·√pairs around `shift`."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, d in zip(se, np.broadcast_to(shift, se.shape), strict=True):
        m = d + rng.normal(0, s * np.sqrt(pairs), pairs)
        test = stats.ttest_1samp(m, 0.0)
        ci = test.confidence_interval(0.95)
        rows.append({"ratio": np.exp(m.mean()), "low": np.exp(ci.low), "high": np.exp(ci.high), "p": test.pvalue,
                     "instances": pairs, "rounds": 40 * pairs})
    return pd.DataFrame(rows)


def test_a_lone_case_must_reach_about_fdr_over_the_cases() -> None:
    thresholds, weights = ab_stats.lone_thresholds(216)
    assert weights.sum() == pytest.approx(1)
    assert thresholds.min() == pytest.approx(0.05 / 216)
    assert weights[thresholds == thresholds.min()][0] > 0.9  # the other cases rarely lift it


def test_the_lone_change_figure_is_found_with_80_percent_power() -> None:
    """Make only case 0 slower, by the change its own figure names; over many comparisons BH flags it in
    80 % of them (±4 points)."""
    pairs, m, trials = 8, 60, 600
    se = np.full(m, 0.006)
    half = stats.t.ppf(0.975, pairs - 1) * se  # intervals whose standard error is exactly se
    exact = pd.DataFrame({"ratio": 1.0, "low": np.exp(-half), "high": np.exp(half), "p": 0.5, "instances": pairs,
                          "rounds": 40 * pairs})
    d80 = ab_stats.lone_detectable(exact)
    assert np.all(d80 > 0)
    shift = np.zeros(m)
    shift[0] = np.log1p(d80[0])
    found = 0
    rng = np.random.default_rng(5)
    for _ in range(trials):
        t = stats.nct.rvs(pairs - 1, shift / se, random_state=rng)  # each case's t over its pairs
        p = 2 * stats.t.sf(np.abs(t), pairs - 1)
        found += bool(stats.false_discovery_control(p)[0] < 0.05 and t[0] > 0)
    assert found / trials == pytest.approx(0.8, abs=0.04)


def test_a_lone_change_needs_more_than_one_test_at_5_percent_says() -> None:
    table = _table(np.full(200, 0.006), 6)
    one_test = ab_stats.detectable(np.expm1(np.log(table["high"] / table["low"]) / 2), table["instances"])
    alone = ab_stats.lone_detectable(table)
    assert np.all(alone > 1.5 * one_test)


def test_the_predicted_share_of_an_injected_change_is_the_share_found() -> None:
    """Inject 3 % into every case of simulated comparisons (8 pairs a case and standard errors as the
    committed default comparisons hold); `flag_share`, computed from one of them, names the share the
    others find (±5 points)."""
    se = np.random.default_rng(6).uniform(0.003, 0.012, 216)
    shift = np.log1p(0.03)
    predicted = ab_stats.flag_share(_table(se, 8, shift, seed=7), 0.03)
    found = []
    for seed in range(20):
        t = _table(se, 8, shift, seed=100 + seed)
        q = stats.false_discovery_control(t["p"])
        found.append(float(((q < 0.05) & (t["ratio"] > 1)).mean()))
    assert 0.05 < predicted < 0.95  # a test that says something
    assert predicted == pytest.approx(float(np.mean(found)), abs=0.05)

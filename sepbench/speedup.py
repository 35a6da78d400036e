"""Realized speedup with an interval, from paired block times of a variant and its baseline."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from sepbench.measure.between import widen

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Speedup:
    ratio: float  # median(baseline) / median(variant): > 1 means the variant is faster
    low: float | None
    high: float | None


def _median_ratio(base: np.ndarray, variant: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(base, axis=axis) / np.median(variant, axis=axis)


def sitting_ratios(base_times: list[float], variant_times: list[float], sittings: list[int]) -> np.ndarray:
    """Each sitting's speedup: the baseline's median over the variant's, over that sitting's rounds."""
    edges = np.cumsum([0, *sittings])
    base, var = np.asarray(base_times), np.asarray(variant_times)
    return np.array([np.median(base[i:j]) / np.median(var[i:j]) for i, j in itertools.pairwise(edges) if j > i])


def _median_over_sittings(ratios: np.ndarray, between: float = 0.0) -> Speedup:
    """The median of the sittings' speedups, with a distribution-free 95 % interval: the order statistics
    a binomial test on the median allows (scipy's `quantile_test`). A run spreads a group's sittings over
    its length, and a spell of the machine moves the ratios of every group measured in it by several %
    at once; a median and its order-statistic interval let a few such sittings go without one moving the
    answer, where a mean and a Student-t interval would take each at full weight. Fewer than 6 sittings
    give no interval at 95 %. `between` (τ, `measure.between`) is added to each side in quadrature: what
    moves a speedup from one run to the next that the run's own sittings do not sample."""
    logs = np.log(ratios)
    centre = float(np.median(logs))
    if len(logs) < 2:
        return Speedup(float(np.exp(centre)), None, None)
    from scipy import stats

    ci = stats.quantile_test(logs, q=centre, p=0.5).confidence_interval(CONFIDENCE)
    if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        return Speedup(float(np.exp(centre)), None, None)
    low, high = widen(centre, float(ci.low), float(ci.high), between) if between else (ci.low, ci.high)
    return Speedup(float(np.exp(centre)), float(np.exp(low)), float(np.exp(high)))


def _geomean_over_sittings(ratios: np.ndarray) -> Speedup:
    """The geometric mean of the sittings' speedups with a Student-t interval on their logs: how records
    of sittings taken back to back (before `estimator` was recorded) were computed."""
    logs = np.log(ratios)
    centre = float(np.mean(logs))
    if len(logs) < 2:
        return Speedup(float(np.exp(centre)), None, None)
    from scipy import stats

    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(logs) - 1) * np.std(logs, ddof=1) / np.sqrt(len(logs)))
    return Speedup(float(np.exp(centre)), float(np.exp(centre - half)), float(np.exp(centre + half)))


# How a speedup over sittings is estimated, as records name it (`realized.estimator`); None: the geometric
# mean with a Student-t interval, as records from before the name computed it.
ESTIMATOR = "median"


def realized_speedup(base_times: list[float], variant_times: list[float], sittings: list[int] | None = None,
                     seed: int = 0, estimator: str | None = ESTIMATOR, between: float = 0.0) -> Speedup:
    """The speedup of a variant over its baseline, with a 95 % interval.

    Measured in sittings (`sittings`: rounds in each), the interval is over sittings: their median
    (`_median_over_sittings`, widened by the between-run component `between`), or for `estimator=None`
    (older records) their geometric mean.
    Otherwise it is the median ratio with a percentile bootstrap over paired rounds: round r of the
    baseline and round r of the variant were timed next to each other, so they are resampled together
    and drift that hit both cancels instead of widening the interval.
    """
    if sittings is not None and len(sittings) >= 2:
        ratios = sitting_ratios(base_times, variant_times, sittings)
        if estimator == ESTIMATOR:
            return _median_over_sittings(ratios, between)
        return _geomean_over_sittings(ratios)
    base, var = np.asarray(base_times), np.asarray(variant_times)
    ratio = float(_median_ratio(base, var))
    if len(base) != len(var) or len(base) < 3 or np.array_equal(base, var):
        return Speedup(ratio, None, None)
    from scipy import stats  # imported here: it costs half a second, and only intervals need it

    res = stats.bootstrap(
        (base, var), _median_ratio, paired=True, vectorized=True, n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed),
    )
    return Speedup(ratio, float(res.confidence_interval.low), float(res.confidence_interval.high))


def spread(base_times: list[float], variant_times: list[float]) -> float:
    """IQR / median of the per-round speedups base_r / variant_r: how steady what a run reports is.

    Drift that slows a whole round slows both blocks of it, so it cancels here, where it widens
    each variant's raw block times; this, not the raw spread, says whether a speedup can be trusted."""
    ratios = np.asarray(base_times) / np.asarray(variant_times)
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    return float((q3 - q1) / med)

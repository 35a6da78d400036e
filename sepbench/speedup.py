"""Realized speedup with an interval, from paired block times of a variant and its baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Speedup:
    ratio: float  # median(baseline) / median(variant): > 1 means the variant is faster
    low: float | None
    high: float | None


def _median_ratio(base: np.ndarray, variant: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(base, axis=axis) / np.median(variant, axis=axis)


def realized_speedup(base_times: list[float], variant_times: list[float], seed: int = 0) -> Speedup:
    """Median ratio and a percentile bootstrap interval over paired rounds.

    Round r of the baseline and round r of the variant were timed next to each other, so they are
    resampled together (paired): drift that hit both cancels instead of widening the interval.
    """
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

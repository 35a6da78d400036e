"""From paired rounds to a verdict per case, for `sepbench ab`.

A round is one block under A and one under B, adjacent in time and in random order. Its log ratio
log(t_B / t_A) cancels whatever slowed or sped up the machine across both blocks. But a worker
process has a speed of its own for a case, beyond its version's: where its code and data landed can
move it by a few per cent for as long as it lives, even in an A/A comparison of one interpreter with
itself. So each side runs several workers, and a pair of them (one A, one B) is the unit. A pair's
figure is the median of its rounds' log ratios: a burst of steal time on a shared VM lands on one
block and drags a mean, not a median (on the committed comparisons the median, held against the mean
on the same rounds, narrowed the intervals by 10–25 % and flagged no A/A case either). The estimate is
the mean of the pairs' medians (a geometric ratio B / A), and the interval and p-value are the
one-sample t-test on them: each pair's median is one draw of its pair, whatever the rounds' noise.
Cases are flagged at a 5 % false discovery rate over all cases (Benjamini–Hochberg). The minimum
detectable change is the interval's half-width as a ratio: a true change that large would put the
interval's edge at 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from sepbench.records import ABCaseRecord

CONFIDENCE = 0.95
FDR = 0.05


@dataclass(frozen=True)
class Paired:
    """B / A for one case from its rounds: ratio, interval, p-value, minimum detectable change."""

    rounds: int
    ratio: float
    low: float
    high: float
    p: float
    mdc: float  # exp(half-width) − 1: the smallest change the interval would have excluded 1 for
    log_sd: float  # spread of the instance pairs' median log ratios (of the rounds', without instances)

    @property
    def half_width(self) -> float:
        return float(np.log(self.high / self.low) / 2)


def _unit_figures(a_s: list[float] | np.ndarray, b_s: list[float] | np.ndarray,
                instances: list[int] | None) -> np.ndarray:
    """Median log ratio of each instance pair (each round is its own unit when there are no instances)."""
    d = np.log(np.asarray(b_s, dtype=float)) - np.log(np.asarray(a_s, dtype=float))
    if instances is None:
        return d
    keys = np.asarray(instances)
    return np.array([np.median(d[keys == k]) for k in dict.fromkeys(instances)])


def paired(a_s: list[float] | np.ndarray, b_s: list[float] | np.ndarray, instances: list[int] | None = None,
           confidence: float = CONFIDENCE) -> Paired:
    """B / A from the per-round log ratios log(b/a), the median within each instance pair, then a
    one-sample t-test against 0 over the instance pairs."""
    m = _unit_figures(a_s, b_s, instances)
    mean = float(m.mean())
    if len(m) < 2:
        return Paired(len(a_s), float(np.exp(mean)), np.nan, np.nan, np.nan, np.nan, np.nan)
    sd = float(m.std(ddof=1))
    if sd == 0:
        return Paired(len(a_s), float(np.exp(mean)), float(np.exp(mean)), float(np.exp(mean)),
                      0.0 if mean else 1.0, 0.0, 0.0)
    test = stats.ttest_1samp(m, 0.0)
    ci = test.confidence_interval(confidence)
    half = (ci.high - ci.low) / 2
    return Paired(len(a_s), float(np.exp(mean)), float(np.exp(ci.low)), float(np.exp(ci.high)), float(test.pvalue),
                  float(np.expm1(half)), sd)


def half_width(a_s: list[float], b_s: list[float], instances: list[int] | None = None,
               confidence: float = CONFIDENCE) -> float:
    """The log interval's half-width so far (inf below 3 units): the stopping rule's yardstick."""
    m = _unit_figures(a_s, b_s, instances)
    if len(m) < 3:
        return float("inf")
    return float(stats.t.ppf(0.5 + confidence / 2, len(m) - 1) * m.std(ddof=1) / np.sqrt(len(m)))


def verdicts(table: pd.DataFrame, fdr: float = FDR) -> pd.DataFrame:
    """Add q-values (Benjamini–Hochberg over the cases with a p-value) and a verdict per case."""
    table = table.copy()
    has_p = table["p"].notna()
    table["q"] = np.nan
    if has_p.any():
        table.loc[has_p, "q"] = stats.false_discovery_control(table.loc[has_p, "p"].to_numpy())
    flagged = table["q"] < fdr
    table["verdict"] = np.where(~has_p, "not compared", np.where(
        ~flagged, "within noise", np.where(table["ratio"] > 1, "B slower", "B faster")))
    return table


def summarize(table: pd.DataFrame) -> dict:
    """One comparison in a few numbers: cases, flags, median ratio and median minimum detectable change."""
    compared = table[table["p"].notna()]
    return {
        "cases": len(table), "compared": len(compared),
        "flagged": int(compared["verdict"].isin(["B slower", "B faster"]).sum()),
        "b_slower": int((compared["verdict"] == "B slower").sum()),
        "b_faster": int((compared["verdict"] == "B faster").sum()),
        "median_ratio": float(compared["ratio"].median()) if len(compared) else np.nan,
        "median_mdc": float(compared["mdc"].median()) if len(compared) else np.nan,
        "median_rounds": float(compared["rounds"].median()) if len(compared) else np.nan,
    }


def case_table(records: list[ABCaseRecord]) -> pd.DataFrame:
    """One row per case of a comparison file: what was compared, the paired estimate, the status."""
    rows = []
    for r in records:
        est = paired(r.a_s, r.b_s, r.instance or None) if r.status == "ok" and len(r.a_s) else None
        rows.append({
            "case_id": r.case_id, "variant": r.case.variant, "label": r.case.label(), "geometry": r.case.geometry(),
            "mode": r.case.mode, "c_in": r.case.c_in, "size": r.case.size, "status": r.status, "reason": r.reason,
            "rounds": est.rounds if est else 0, "instances": len(set(r.instance)) if r.instance else 0,
            "a_s": float(np.median(r.a_s)) if r.a_s else np.nan,
            "b_s": float(np.median(r.b_s)) if r.b_s else np.nan,
            "ratio": est.ratio if est else np.nan, "low": est.low if est else np.nan,
            "high": est.high if est else np.nan, "p": est.p if est else np.nan, "mdc": est.mdc if est else np.nan,
            "log_sd": est.log_sd if est else np.nan, "seconds": r.seconds,
        })
    columns = ["case_id", "variant", "label", "geometry", "mode", "c_in", "size", "status", "reason", "rounds",
               "instances", "a_s",
               "b_s", "ratio", "low", "high", "p", "mdc", "log_sd", "seconds"]
    return verdicts(pd.DataFrame(rows, columns=columns))

"""What a `sepbench ab` file says about the machine it ran on, beyond its verdicts.

Per comparison file: cases flagged, the median B / A (an A/A's side bias), the Kolmogorov–Smirnov
p-value of the case p-values against uniform (an A/A's should be uniform), the position effect (the
second block of a round against the first), whether a side that ran more calls per block read faster
(protocol 1 calibrated each side apart), whether the worker-pair index carries a speed of its own
across cases (one-way ANOVA of the pairs' figures about their case's mean), the in-run control, and
the median interval half-width under the two pair estimators: the median over a pair's rounds (the
protocol-1 reading) and the mean of the two orders' medians (protocol 2). On protocol-1 files, whose
order was drawn per round, the second shows what modelling the order buys without designing it away.

    python benchmarks/ab_calibration.py results/ab/*.jsonl [--csv out.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sepbench.ab import stats as ab
from sepbench.records import ABCaseRecord
from sepbench.store import read_ab


def pair_offsets(records: list[ABCaseRecord], by_order: bool) -> float:
    """p-value that every worker-pair index has the same mean figure about its case's mean (ANOVA)."""
    groups: dict[int, list[float]] = {}
    for r in records:
        if r.status != "ok" or not r.instance:
            continue
        keys = list(dict.fromkeys(r.instance))
        figures = ab._unit_figures(r.a_s, r.b_s, r.instance, r.order if by_order else None)
        for k, f in zip(keys, figures - figures.mean(), strict=True):
            groups.setdefault(k, []).append(float(f))
    usable = [g for g in groups.values() if len(g) >= 3]
    return float(stats.f_oneway(*usable).pvalue) if len(usable) >= 2 else float("nan")


def calls_effect(records: list[ABCaseRecord], table: pd.DataFrame) -> tuple[float, float]:
    """Spearman's correlation, and its p-value, between log(calls per block B / A) and a case's log
    ratio: does the side that runs more calls per block read faster per call? (NaN where both sides
    always run the same calls, as in protocol 2.)"""
    ratio = dict(zip(table["case_id"], table["ratio"], strict=True))
    x = [np.log(r.number_b / r.number_a) for r in records if r.number_a and r.number_b and r.case_id in ratio]
    y = [np.log(ratio[r.case_id]) for r in records if r.number_a and r.number_b and r.case_id in ratio]
    if len(x) < 10 or not np.any(x):
        return float("nan"), float("nan")
    rho = stats.spearmanr(x, y)
    return float(rho.statistic), float(rho.pvalue)


def describe(path: Path) -> dict:
    ab_file = read_ab(path)
    h = ab_file.header
    assert h is not None  # read_ab refuses a file without one
    records = ab_file.records
    table, control = ab.of_file(ab_file)
    s = ab.summarize(table)
    plain = ab.case_table(records, by_order=False)
    balanced = ab.case_table(records, by_order=True)
    settings = ", ".join(f"{k}={v}" for k, v in sorted(h.b.env.items())) or ""
    rho, rho_p = calls_effect(records, table)
    return {
        "file": path.name, "protocol": h.protocol, "kind": "A/A" if h.aa else "A/B",
        "inject_pct": 100 * h.inject, "b_settings": settings, "cases": s.compared, "flagged": s.flagged,
        "b_slower": s.b_slower, "b_faster": s.b_faster, "withheld": s.withheld,
        "median_ratio": s.median_ratio, "median_flagged": s.median_flagged, "ks_p": s.ks_p,
        "calls_rho": rho, "calls_rho_p": rho_p, "position_pct": 100 * (s.position - 1),
        "pair_offset_p": pair_offsets(records, False),
        "half_width_plain_pct": 100 * plain["mdc"].median(), "half_width_by_order_pct": 100 * balanced["mdc"].median(),
        "control_cases": control.cases if control else 0, "control_flagged": control.flagged if control else np.nan,
        "control_bias": control.bias if control else np.nan,
        "control_fake_pct": control.fake_change if control else np.nan,
        "minutes": sum(r.seconds for r in records) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--csv", type=Path, help="write the table here")
    args = parser.parse_args()
    table = pd.DataFrame([describe(p) for p in args.files])
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_colwidth", 60):
        print(table.drop(columns=["file"]).round(4).to_string())
        print()
        print(table[["file"]].to_string())
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()

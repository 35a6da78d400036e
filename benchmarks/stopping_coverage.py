"""Does `run`'s stopping rule keep its interval's coverage, and can a run see its own between-run part?

From the recorded sittings of committed `default` runs (each variant's sittings' log speedups, the
population), draws sittings one at a time with replacement and applies each rule; an interval covers
when it holds the population's centre (its median for the median rule, its mean for the t rules):

- `peek-median` — `run`'s rule: the median over sittings with its order-statistic interval, checked after
  every sitting from the sixth, stopping the first time it is within ±3 % (at most 100 sittings);
- `peek-t` — the same rule with the mean and a Student t interval;
- `two-stage-t` — a sample size fixed from a pilot of 6 (Stein's), then a t interval, no peeking.

Then, per run, τ read from its own sittings: the first half of each variant's sittings against the second
half, pooled over the variants (the method of moments `sepbench.measure.between` uses between runs).

    python benchmarks/stopping_coverage.py results/trust/default-*.jsonl --out results/trust/stopping-coverage.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sepbench.speedup import realized_speedup, sitting_ratios
from sepbench.store import read_run

TARGET, MOST, PILOT = 0.03, 100, 6


def populations(paths: list[Path], least: int = 12) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Each variant's sittings' log speedups (with at least `least` sittings), and each run's half-split τ."""
    found, halves = [], []
    for path in paths:
        run = read_run(path)
        times = {r.case_id: r.timing for r in run.records if r.timing is not None}
        excess = []
        for r in run.records:
            if r.realized is None or r.timing is None or not r.timing.sittings:
                continue
            base = times[r.case.baseline().id]
            logs = np.log(sitting_ratios(base.times_s, r.timing.times_s, r.timing.sittings))
            if len(logs) >= least:
                found.append(logs)
            half = len(logs) // 2
            if half >= 3:
                a, b = logs[:half], logs[half:]
                excess.append((a.mean() - b.mean()) ** 2 - a.var(ddof=1) / len(a) - b.var(ddof=1) / len(b))
        halves.append({"rule": "half-split tau", "file": path.name,
                       "tau": float(np.sqrt(max(np.mean(excess) / 2, 0))) if excess else np.nan})
    return found, pd.DataFrame(halves)


def _t(x: np.ndarray) -> tuple[float, float]:
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def peek_median(pop: np.ndarray, rng: np.random.Generator) -> tuple[bool, int, float]:
    drawn = list(rng.choice(pop, PILOT))
    while True:
        ones = np.ones(2 * len(drawn))
        s = realized_speedup(list(ones), list(ones / np.exp(np.repeat(drawn, 2))), [2] * len(drawn))
        if s.low is not None and s.high is not None and ((s.high - s.low) / 2 / s.ratio <= TARGET
                                                         or len(drawn) >= MOST):
            truth = np.exp(np.median(pop))
            return s.low <= truth <= s.high, len(drawn), (s.high - s.low) / 2 / s.ratio
        drawn.append(rng.choice(pop))


def peek_t(pop: np.ndarray, rng: np.random.Generator) -> tuple[bool, int, float]:
    drawn = list(rng.choice(pop, PILOT))
    while True:
        low, high = _t(np.array(drawn))
        if (high - low) / 2 <= TARGET or len(drawn) >= MOST:
            return low <= pop.mean() <= high, len(drawn), (high - low) / 2
        drawn.append(rng.choice(pop))


def two_stage_t(pop: np.ndarray, rng: np.random.Generator) -> tuple[bool, int, float]:
    pilot = rng.choice(pop, PILOT)
    n = int(np.clip(np.ceil((stats.t.ppf(0.975, PILOT - 1) * pilot.std(ddof=1) / TARGET) ** 2), PILOT, MOST))
    drawn = np.concatenate([pilot, rng.choice(pop, n - PILOT)])
    low, high = _t(drawn)
    return low <= pop.mean() <= high, n, (high - low) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--draws", type=int, default=40, help="draws per variant and rule")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pops, halves = populations(args.runs)
    rng = np.random.default_rng(0)
    rows = []
    for rule in (peek_median, peek_t, two_stage_t):
        got = np.array([rule(p, rng) for p in pops for _ in range(args.draws)], dtype=float)
        rows.append({"rule": rule.__name__.replace("_", "-"), "variants": len(pops), "draws": args.draws,
                     "coverage": got[:, 0].mean(), "median_sittings": float(np.median(got[:, 1])),
                     "median_half_width": float(np.median(got[:, 2]))})
        print(rows[-1])
    table = pd.concat([pd.DataFrame(rows), halves], ignore_index=True)
    print(halves.to_string(index=False))
    table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()

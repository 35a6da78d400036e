"""What moves a speedup between runs that one run's sittings do not sample: a variance component.

A run spreads each group's sittings over its length, so the machine's spells within the run, fresh
tensors and the order of the rounds are in its interval. What a run holds fixed is not: the spell the
whole run fell in, the process (its heap's layout, oneDNN's primitive choices) and the host. Two runs
of one grid then differ by more than their intervals allow (`docs/measuring.md`, "Intervals that
cover a re-run"). The between-run component τ is the standard deviation, on the log scale, of that
extra move, estimated from pairs of complete runs of one grid by the method of moments:

    E[(log s₁ − log s₂)²] = se₁² + se₂² + 2 τ²

pooled over every variant both runs hold (se from each run's own interval over sittings). A run adds τ
to each interval in quadrature, so its interval is about a re-run, not only about its own sittings.

Which τ: from earlier complete runs of the grid on this host, torch and thread count in the output
folder (two are enough), else from the committed runs of `default` on the VM kind sepbench is measured
on (`REFERENCE`), which the run names as its source.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from sepbench.records import ABHeader
    from sepbench.store import RunFile

Z95 = 1.959963984540054

# The committed repeat runs τ falls back to: `default` on the 2-core VM, quiet and beside one busy
# process (the runs beside two busy processes saturate their intervals and say nothing of τ).
REFERENCE = [f"results/trust/default-cpu-vm-torch2.13.0+cpu-20261130T{t}Z.jsonl"
             for t in ("114724", "115343", "120051", "120756")]
# τ pooled over every pair of `REFERENCE`, as `estimate` computes it (re-derived by tests/test_intervals.py).
REFERENCE_TAU = 0.0080

# A grid's median half-width as measured with τ in its intervals, lowest and highest over the committed
# runs on the reference VMs, and where the docs show them (re-derived by tests/test_intervals.py).
DOCUMENTED: dict[str, tuple[float, float, str]] = {
    "default": (0.0384, 0.0739, "results/trust/between-run/, docs/measuring.md"),
}


@dataclass(frozen=True)
class Between:
    tau: float  # the between-run standard deviation of a log speedup
    source: str  # where it comes from, as the run says it
    pairs: int = 0  # pairs of runs it was estimated from (0: the reference)

    def as_dict(self) -> dict[str, float | str | int]:
        return {"tau": self.tau, "source": self.source, "pairs": self.pairs}


@dataclass(frozen=True)
class Estimate:
    log_ratio: float
    se_low: float  # the within-run interval's lower and upper half-widths on the log scale, over 1.96
    se_high: float

    @property
    def se(self) -> float:
        return (self.se_low + self.se_high) / 2


def within(speedup: float, low: float, high: float, tau: float | None) -> Estimate:
    """A recorded interval with the between-run part taken out again: what the run's sittings alone gave."""
    centre = math.log(speedup)
    extra = (Z95 * (tau or 0.0)) ** 2

    def part(half: float) -> float:
        return math.sqrt(max(half * half - extra, 0.0)) / Z95

    return Estimate(centre, part(centre - math.log(low)), part(math.log(high) - centre))


def widen(centre: float, low: float, high: float, tau: float) -> tuple[float, float]:
    """An interval over sittings (log scale) with the between-run component added in quadrature on each side."""
    extra = Z95 * tau
    return centre - math.hypot(centre - low, extra), centre + math.hypot(high - centre, extra)


def estimate(runs: Sequence[dict[str, Estimate]]) -> tuple[float, int]:
    """τ pooled over every pair of runs (each: case id → its within-run estimate), and the pairs used."""
    excess: list[float] = []
    pairs = 0
    for a, b in itertools.combinations(runs, 2):
        shared = a.keys() & b.keys()
        if not shared:
            continue
        pairs += 1
        excess += [((a[k].log_ratio - b[k].log_ratio) ** 2 - a[k].se ** 2 - b[k].se ** 2) / 2 for k in shared]
    if not excess:
        return REFERENCE_TAU, 0
    return math.sqrt(max(sum(excess) / len(excess), 0.0)), pairs


def estimates(records: Iterable[dict]) -> dict[str, Estimate]:
    """Each variant's within-run estimate from a run's records (as `store.read_run` gives them, dumped)."""
    out = {}
    for r in records:
        real = r.get("realized") or {}
        if r.get("status") == "ok" and real.get("low") and real.get("high"):
            out[r["case_id"]] = within(real["speedup"], real["low"], real["high"], real.get("between_run"))
    return out


def _of_run(run: RunFile) -> dict[str, Estimate]:
    return estimates(r.model_dump(mode="json") for r in run.records)


def reference(root: Path) -> float:
    """τ from the committed reference runs under `root` (the repository): how `REFERENCE_TAU` is derived."""
    from sepbench.store import read_run

    return estimate([_of_run(read_run(root / p)) for p in REFERENCE])[0]


def for_run(folder: Path, grid_digest: str, same: dict[str, object]) -> Between:
    """τ for a new run: from the folder's complete runs of the grid on this host, torch and thread count
    when there are two or more, else the reference."""
    from sepbench.store import read_run

    runs = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            run = read_run(path)
        except Exception:  # a damaged or foreign file says nothing of τ
            continue
        h = run.header
        if h is None or run.end is None or getattr(h, "grid_digest", None) != grid_digest:
            continue
        env = getattr(h, "environment", {})
        if env.get("host") is None or any(env.get(k) != v for k, v in same.items()):
            continue
        runs.append(_of_run(run))
    if len(runs) >= 2:
        tau, pairs = estimate(runs[-4:])  # the newest few: the host's present, not its history
        return Between(tau, f"measured on this host from {len(runs[-4:])} earlier runs of this grid", pairs)
    return Between(REFERENCE_TAU, "the reference VM's (results/trust); run this grid twice here to measure "
                   "this host's")


# `sepbench ab`: the same component for a comparison's per-case log ratio B / A. Its pairs of worker
# processes sample the process; what a re-run of the comparison can still move is the rest (the spell
# the whole comparison fell in, as it acts on B and A differently). Without repeats of a comparison on
# this host, τ is the committed protocol-2 A/A comparisons' (`AB_REFERENCE`, re-derived by the suite).
AB_REFERENCE = [f"results/ab/aa-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-{t}.jsonl"
                for t in ("20261130T144555Z", "20261130T152817Z", "20261206T172630Z")]
AB_REFERENCE_TAU = 0.0


def ab_estimates(table: pd.DataFrame, tau: float) -> dict[str, Estimate]:
    """Each compared case's log ratio and standard error from a comparison's case table (`ab.stats`),
    with the between-run component `tau` it was read with taken out again."""
    import numpy as np

    from sepbench.ab.stats import df_and_se

    _, se = df_and_se(table)
    se = np.sqrt(np.maximum(se ** 2 - tau ** 2, 0.0))
    out = {}
    for key, ratio, s, p in zip(table["case_id"], table["ratio"], se, table["p"], strict=True):
        if np.isfinite(p) and np.isfinite(s):
            out[str(key)] = Estimate(math.log(ratio), float(s), float(s))
    return out


def _aa_excess(table: pd.DataFrame) -> list[float]:
    """Each A/A case's squared log ratio less its squared standard error: τ² per case, where B / A is 1."""
    return [e.log_ratio ** 2 - e.se ** 2 for e in ab_estimates(table, 0.0).values()]


def ab_reference(root: Path) -> float:
    """τ of a comparison from the committed A/A comparisons under `root` (how `AB_REFERENCE_TAU` is derived):
    E[(log r)²] = se² + τ² where the true ratio is 1, pooled over their cases, 0 where the excess is not
    positive."""
    from sepbench.ab.stats import comparison
    from sepbench.store import read_ab

    excess: list[float] = []
    for p in AB_REFERENCE:
        ab = read_ab(root / p)
        assert ab.header is not None  # read_ab refuses a file without one
        excess += _aa_excess(comparison(ab.records, ab.header.protocol)[0])
    return math.sqrt(max(sum(excess) / len(excess), 0.0))


def _ab_identity(header: ABHeader) -> tuple:
    """What makes two comparison files repeats of one comparison on one host."""
    a, b = header.a, header.b
    return (header.grid_digest, header.aa, header.inject, header.threads, header.protocol,
            a.environment.get("torch"), b.environment.get("torch"), sorted(a.env.items()), sorted(b.env.items()),
            a.environment.get("host"), a.environment.get("cpu"))


def for_ab(folder: Path, header: ABHeader) -> Between:
    """τ for a new comparison (its `header`): from the folder's repeats of it on this host (the same sides,
    grid and settings; an interrupted one counts with the cases it holds) when there are two or more,
    else the reference."""
    import json

    from sepbench.ab.stats import comparison
    from sepbench.records import ABHeader
    from sepbench.store import read_ab

    identity = _ab_identity(header)
    runs = []
    if header.a.environment.get("host") is not None:  # without a host, no file is known to be a repeat here
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            try:  # the header first: only a repeat is read whole
                with path.open() as f:
                    h = ABHeader.model_validate(json.loads(f.readline()))
                if _ab_identity(h) != identity:
                    continue
                ab = read_ab(path)
            except Exception:  # a damaged or foreign file says nothing of τ
                continue
            tau = float((h.between_run or {}).get("tau", 0.0))
            runs.append(ab_estimates(comparison(ab.records, h.protocol, tau)[0], tau))
    if len(runs) >= 2:
        tau, pairs = estimate(runs[-4:])
        return Between(tau, f"measured on this host from {len(runs[-4:])} earlier runs of this comparison", pairs)
    return Between(AB_REFERENCE_TAU, "the committed A/A comparisons' (results/ab); run this comparison twice "
                   "here to measure this host's")

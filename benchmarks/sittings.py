"""How far a realized speedup moves between sittings, against what an interval over rounds claims.

For a sample of the `default` preset's groups, in turn: sittings on the same tensors in one process,
sittings on fresh tensors in one process, and sittings in fresh processes (how `sepbench run` times a
CPU group: `sepbench.measure.sitting`). Each sitting is a few interleaved rounds. Per variant and
sitting it writes the speedup and its bootstrap interval over the sitting's rounds. The spread of a
variant's speedup across sittings of one kind is what that kind of replication sees; the bootstrap's
width is what an interval over rounds claims. Usage: `python benchmarks/sittings.py [OUT.csv]`
(default: results/machine/sittings-<machine>-torch<version>-<UTC time>.csv); it prints the summary.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from sepbench.grid import load_preset
from sepbench.measure import sitting
from sepbench.measure.environment import fingerprint
from sepbench.measure.runner import plan
from sepbench.measure.timer import cores_for, intra_op_threads, measure_interleaved, pinned, synchronizer
from sepbench.measure.workload import Workload, backend_flags
from sepbench.speedup import realized_speedup

GROUPS, SITTINGS, ROUNDS = 10, 6, 4
SETTINGS = {"block_time": 0.01, "warmup_time": 0.05}


def sittings() -> pd.DataFrame:
    groups = plan(load_preset("default")).groups
    rows = []
    with pinned(cores_for(1)), intra_op_threads(1):
        for grp in groups[:: max(1, len(groups) // GROUPS)][:GROUPS]:
            base = grp[0].baseline()
            members = [base, *[c for c in grp if c.id != base.id]]
            with backend_flags(base):
                works = {c.id: Workload(c) for c in members}
            def same(rounds: int, numbers: object, first_round: int, works: dict = works) -> dict:
                return measure_interleaved({k: w.step for k, w in works.items()}, synchronizer("cpu"),
                                           min_run_time=0.0, min_rounds=rounds, max_rounds=rounds,
                                           block_time=SETTINGS["block_time"], warmup_time=SETTINGS["warmup_time"])
            ways = {"same tensors": same,
                    "fresh tensors": sitting.in_process(members, 1, SETTINGS["block_time"], SETTINGS["warmup_time"]),
                    "fresh process": sitting.in_fresh_process(members, 1, cores_for(1), SETTINGS["block_time"],
                                                              SETTINGS["warmup_time"])}
            for how, sit in ways.items():
                for s in range(SITTINGS):
                    t = sit(ROUNDS, None, 0)
                    for c in members[1:]:
                        sp = realized_speedup(t[base.id].times, t[c.id].times)
                        rows.append({"sittings": how, "sitting": s, "case_id": c.id, "variant": c.variant,
                                     "mode": c.mode, "speedup": sp.ratio, "low": sp.low, "high": sp.high})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per way of sitting: the SD of log speedup across sittings (root mean square over variants), and
    the SD a bootstrap interval over rounds implies (its median log half-width / 1.96)."""
    df = df.assign(log=np.log(df["speedup"]), claimed=np.log(df["high"] / df["low"]) / 2 / 1.96)
    return df.groupby("sittings").apply(lambda g: pd.Series({
        "between_sittings_sd": float(np.sqrt(g.groupby("case_id")["log"].var().mean())),
        "bootstrap_sd": float(g["claimed"].median())}), include_groups=False)


if __name__ == "__main__":
    env = fingerprint("cpu", 1)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        Path("results/machine") / f"sittings-{env['machine']}-torch{env['torch']}-{stamp}.csv"
    table = sittings().assign(machine=env["machine"], cpu=env.get("cpu"), torch=env["torch"])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(summary(table).round(4).to_string())
    print(f"→ {out}")

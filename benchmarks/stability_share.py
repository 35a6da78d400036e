"""How many cases of the committed `default` runs each stability judgement flags: the raw one (a case's
block times spread beyond the threshold: drift) against the paired one (the per-round speedups over
the baseline spread beyond it: what the run reports). Both from the stored block times of each run.

    python benchmarks/stability_share.py [--csv FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from sepbench.report.analysis import prepare
from sepbench.store import load

ROOT = Path(__file__).resolve().parent.parent


def shares(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for path in paths:
        df, _ = load([path])
        df = prepare(df)
        ok = df[df["status"] == "ok"]
        variants = ok[ok["realized_speedup"].notna()]
        rows.append({"file": path.name, "threads": int(ok["threads"].iloc[0]), "cases": len(ok),
                     "raw_flagged": int(ok["timing_unstable"].sum()), "variants": len(variants),
                     "raw_flagged_variants": int(variants["timing_unstable"].sum()),
                     "paired_flagged_variants": int(variants["realized_unstable"].sum()),
                     "median_speedup_spread": float(variants["realized_spread"].median())})
    return pd.DataFrame(rows)


def main() -> None:
    table = shares(sorted((ROOT / "results").glob("default-cpu-vm-*.jsonl")))
    print(table.to_string(index=False))
    if "--csv" in sys.argv:
        table.to_csv(sys.argv[sys.argv.index("--csv") + 1], index=False)


if __name__ == "__main__":
    main()

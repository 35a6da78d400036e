"""Do runs of one grid agree with each other? Quiet against busy, and quiet against quiet.

Given run files labelled `quiet` or `busy`, prints per run: unstable variants, wall time, blocks
re-taken and the machine's load; per variant: the median realized speedup in each condition over
the cases every run holds, and the busy-over-quiet ratio; and, for every pair of quiet runs, the
share of cases whose 95 % intervals overlap (the run's A/A).

    python benchmarks/run_agreement.py quiet=results/a.jsonl busy=results/b.jsonl quiet=... [--csv out.csv]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

from sepbench.store import load, read_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=PATH")
    parser.add_argument("--csv", type=Path, help="write the per-variant table here")
    args = parser.parse_args()
    frames, summary = [], []
    for i, text in enumerate(args.runs):
        label, path = text.split("=", 1)
        run = read_run(Path(path))
        df, _ = load([Path(path)])
        var = df[df["realized_speedup"].notna()].assign(condition=label, run=i)
        frames.append(var)
        end = run.end
        summary.append({"run": i, "condition": label, "file": Path(path).name, "variants": len(var),
                        "unstable": int(var["realized_unstable"].sum()),
                        "median_half_width_pct": 100 * var["realized_half_width"].median(),
                        "wall_s": end.seconds if end else None,
                        "retaken_pct": 100 * end.retaken_share if end else None,
                        "other_cores": f"{run.header.machine_start.get('other_cores')}→"
                                       f"{end.machine_end.get('other_cores')}" if end and run.header else None})
    print(pd.DataFrame(summary).round(2).to_string(index=False))
    all_ = pd.concat(frames)
    common = set.intersection(*(set(f["case_id"]) for f in frames))
    all_ = all_[all_["case_id"].isin(common)]
    per = all_.groupby(["label", "condition"])["realized_speedup"].median().unstack()
    if {"quiet", "busy"} <= set(per.columns):
        per["busy/quiet"] = per["busy"] / per["quiet"]
    print(f"\nmedian realized × per variant over the {len(common)} cases every run holds")
    print(per.round(3).to_string())
    quiet = [f.set_index("case_id") for f in frames if f["condition"].iloc[0] == "quiet"]
    for (i, a), (j, b) in itertools.combinations(enumerate(quiet), 2):
        both = a.index.intersection(b.index)
        overlap = ((a.loc[both, "realized_low"] <= b.loc[both, "realized_high"])
                   & (b.loc[both, "realized_low"] <= a.loc[both, "realized_high"]))
        print(f"quiet runs {i} and {j}: intervals overlap in {int(overlap.sum())} of {len(both)} cases "
              f"({overlap.mean():.1%})")
    if args.csv:
        per.to_csv(args.csv)


if __name__ == "__main__":
    main()

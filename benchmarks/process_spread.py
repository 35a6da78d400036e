"""How far one process's reading of a case lies from the next process's, and what asv's old per-call
setup did to a step: the measurements behind the README's account of the asv crosscheck.

    python benchmarks/process_spread.py [--processes 8] [--out results/crosscheck/process-spread.csv]

Part 1 (ablation, one process): per CPU case of benchmarks/grid.toml, interleaved in rounds, the
median of sepbench's 10 ms blocks, of single steps timed back to back, and of single steps each timed
right after a setup/teardown pair like the old asv adapter's (thread check, backend flags). Part 2
(spread): the same cases timed sepbench's way in N fresh processes one after another; per case the
min, median and max over processes. Both parts are written to one CSV. The script prints; it judges
nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import CASES, GRID
from sepbench.timer import calibrate, time_block, warm_up
from sepbench.workload import Workload, backend_flags

CPU = sorted(k for k in CASES if k[0] == "cpu")
ROUNDS, SINGLES = 15, 5


def _nothing() -> None:
    pass


def blocked_medians() -> dict[str, float]:
    """One process: sepbench's blocked median of every CPU case (what part 2 runs per process)."""
    torch.set_num_threads(GRID.measure.threads or 1)
    works = {k: Workload(CASES[k]) for k in CPU}
    for w in works.values():
        warm_up(w.step, _nothing, GRID.measure.warmup_time)
    numbers = {k: calibrate(w.step, _nothing, GRID.measure.block_time) for k, w in works.items()}
    times: dict = {k: [] for k in CPU}
    for _ in range(GRID.measure.min_rounds):
        for k, w in works.items():
            times[k].append(time_block(w.step, _nothing, numbers[k]))
    return {"|".join(map(str, k)): statistics.median(v) for k, v in times.items()}


def ablation() -> list[dict]:
    torch.set_num_threads(GRID.measure.threads or 1)
    rows = []
    for key in CPU:
        case, work = CASES[key], Workload(CASES[key])
        warm_up(work.step, _nothing, 0.2)
        number = calibrate(work.step, _nothing, GRID.measure.block_time)
        blocks, singles, after_setup = [], [], []
        for _ in range(ROUNDS):
            blocks.append(time_block(work.step, _nothing, number))
            for _ in range(SINGLES):
                t = time.perf_counter()
                work.step()
                singles.append(time.perf_counter() - t)
            for _ in range(SINGLES):  # the old adapter's setup, then its teardown, around every timed call
                if torch.get_num_threads() != (GRID.measure.threads or 1):
                    torch.set_num_threads(GRID.measure.threads or 1)
                flags = backend_flags(case)
                flags.__enter__()
                t = time.perf_counter()
                work.step()
                after_setup.append(time.perf_counter() - t)
                flags.__exit__(None, None, None)
        block = statistics.median(blocks)
        rows.append({"part": "ablation", "device": key[0], "mode": key[1], "c_in": key[2], "variant": key[3],
                     "block_s": block, "single_s": statistics.median(singles),
                     "single_after_setup_s": statistics.median(after_setup)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("results/crosscheck/process-spread.csv"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(blocked_medians()))
        return
    rows = ablation()
    for r in rows:
        print(f"ablation {r['mode']:9s} c{r['c_in']:<4d} {r['variant']:20s} block {r['block_s'] * 1e6:8.1f} µs   "
              f"single/block {r['single_s'] / r['block_s']:.3f}   "
              f"single-after-setup/block {r['single_after_setup_s'] / r['block_s']:.3f}")
    per_process = []
    for i in range(args.processes):
        out = subprocess.run([sys.executable, __file__, "--child"], check=True, capture_output=True, text=True)
        per_process.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"process {i + 1}/{args.processes} done", file=sys.stderr)
    for key in CPU:
        values = [p["|".join(map(str, key))] for p in per_process]
        med = statistics.median(values)
        rows.append({"part": "spread", "device": key[0], "mode": key[1], "c_in": key[2], "variant": key[3],
                     "processes": len(values), "min_s": min(values), "median_s": med, "max_s": max(values),
                     "per_process_s": json.dumps(values)})
        print(f"spread   {key[1]:9s} c{key[2]:<4d} {key[3]:20s} median {med * 1e6:8.1f} µs   "
              f"min/median {min(values) / med:.3f}   max/median {max(values) / med:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()

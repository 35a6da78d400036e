"""How far one process's reading of a case lies from the next process's, what the allocator's policy does
to it, and what asv's old per-call setup did to a step: the measurements behind the README's account of
the asv crosscheck.

    python benchmarks/process_spread.py [--processes 8] [--out results/crosscheck/process-spread.csv]

Part 1, ablation (one process): per CPU case of benchmarks/grid.toml, interleaved in rounds, the median
of sepbench's 10 ms blocks, of single steps timed back to back, and of single steps each timed right
after a setup/teardown pair like the old asv adapter's (thread check, backend flags).
Part 2, spread: the same cases timed sepbench's way in N fresh processes, alternating two kinds of
process: "glibc-defaults" (SEPBENCH_HEAP=default: glibc adapts its thresholds to the process's
history) and "steady-heap" (sepbench's fixed thresholds, `workload.steady_heap`). Per case and kind:
the min, median and max over processes of the blocked median, and the page faults per step.
Both parts go to one CSV. The script prints; it judges nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID_FILE = ROOT / "benchmarks" / "grid.toml"
ROUNDS, SINGLES = 15, 5
KINDS = ("glibc-defaults", "steady-heap")


def _nothing() -> None:
    pass


def _cpu_cases() -> dict[tuple, object]:
    """The grid's CPU cases by (device, mode, c_in, variant), exactly as the asv suite names them."""
    sys.path.insert(0, str(ROOT))  # run as a script, this folder is on the path, not the repository
    from benchmarks.common import CASES

    return {k: c for k, c in CASES.items() if k[0] == "cpu"}


def child() -> dict[str, list[float]]:
    """One fresh process: per CPU case, sepbench's blocked median and the minor page faults per step.
    The kind of process is set by the parent through SEPBENCH_HEAP."""
    import resource

    import torch

    from sepbench.grid import load_grid
    from sepbench.measure.timer import calibrate, time_block, warm_up
    from sepbench.measure.workload import Workload

    measure = load_grid(GRID_FILE).measure
    torch.set_num_threads(measure.threads or 1)
    cases = _cpu_cases()
    works = {k: Workload(c) for k, c in sorted(cases.items())}
    for w in works.values():
        warm_up(w.step, _nothing, measure.warmup_time)
    numbers = {k: calibrate(w.step, _nothing, measure.block_time) for k, w in works.items()}
    times: dict = {k: [] for k in works}
    faults: dict = dict.fromkeys(works, 0)
    for _ in range(measure.min_rounds):
        for k, w in works.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            times[k].append(time_block(w.step, _nothing, numbers[k]))
            faults[k] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    steps = measure.min_rounds
    return {"|".join(map(str, k)): [statistics.median(v), faults[k] / (steps * numbers[k])] for k, v in times.items()}


def ablation() -> list[dict]:
    import torch

    from sepbench.grid import load_grid
    from sepbench.measure.timer import calibrate, time_block, warm_up
    from sepbench.measure.workload import Workload, backend_flags

    threads = load_grid(GRID_FILE).measure.threads or 1
    torch.set_num_threads(threads)
    rows = []
    for key, case in sorted(_cpu_cases().items()):
        work = Workload(case)
        warm_up(work.step, _nothing, 0.2)
        number = calibrate(work.step, _nothing, 0.01)
        blocks, singles, after_setup = [], [], []
        for _ in range(ROUNDS):
            blocks.append(time_block(work.step, _nothing, number))
            for _ in range(SINGLES):
                t = time.perf_counter()
                work.step()
                singles.append(time.perf_counter() - t)
            for _ in range(SINGLES):  # the old adapter's setup, then its teardown, around every timed call
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
                flags = backend_flags(case)
                flags.__enter__()
                t = time.perf_counter()
                work.step()
                after_setup.append(time.perf_counter() - t)
                flags.__exit__(None, None, None)
        rows.append({"part": "ablation", "mode": key[1], "c_in": key[2], "variant": key[3],
                     "block_s": statistics.median(blocks), "single_s": statistics.median(singles),
                     "single_after_setup_s": statistics.median(after_setup)})
        r = rows[-1]
        print(f"ablation {key[1]:9s} c{key[2]:<4d} {key[3]:20s} block {r['block_s'] * 1e6:8.1f} µs   "
              f"single/block {r['single_s'] / r['block_s']:.3f}   "
              f"single-after-setup/block {r['single_after_setup_s'] / r['block_s']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8, help="fresh processes of each kind")
    parser.add_argument("--out", type=Path, default=ROOT / "results/crosscheck/process-spread.csv")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child()))
        return
    import pandas as pd

    rows = ablation()
    readings: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for i in range(args.processes):
        for kind in KINDS:  # alternating, so drift reaches both kinds alike
            env = {**os.environ, "SEPBENCH_HEAP": "default" if kind == "glibc-defaults" else "steady"}
            done = subprocess.run([sys.executable, __file__, "--child"], check=True, capture_output=True, text=True,
                                  env=env)
            readings[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"processes {i + 1}/{args.processes} of each kind done", file=sys.stderr, flush=True)
    for key in sorted(readings[KINDS[0]][0]):
        _, mode, c_in, variant = key.split("|")
        for kind in KINDS:
            values = [p[key][0] for p in readings[kind]]
            faults = [p[key][1] for p in readings[kind]]
            med = statistics.median(values)
            rows.append({"part": f"spread-{kind}", "mode": mode, "c_in": int(c_in), "variant": variant,
                         "processes": len(values), "min_s": min(values), "median_s": med, "max_s": max(values),
                         "max_faults_per_step": max(faults), "per_process_s": json.dumps(values),
                         "per_process_faults_per_step": json.dumps(faults)})
            print(f"spread {kind:14s} {mode:9s} c{c_in:<4s} {variant:20s} median {med * 1e6:8.1f} µs   "
                  f"min/median {min(values) / med:.3f}   max/median {max(values) / med:.3f}   "
                  f"faults/step ≤ {max(faults):.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()

"""What a contended block looks like on this machine: the evidence behind `sepbench.measure.machine`'s
thresholds.

One conv step (standard 32→32 28² inference) is timed in blocks on one pinned core, quiet, beside one
and two busy processes (`python3 -c 'while True: pass'`, started here, unpinned), and with two
intra-op threads beside one busy process. Every block's wall time, CPU share, run-queue wait share,
steal share and involuntary switches go to one CSV row, with the reference probe read before it and
the verdict of the detector.

    python benchmarks/contention.py [--seconds 8] [--out results/machine]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from sepbench.case import Case

# `timer` as a module: asv would take a bare `time_block` here for a benchmark of its own.
from sepbench.measure import machine, timer
from sepbench.measure.environment import machine_name
from sepbench.measure.workload import Workload

CONDITIONS = [("quiet", 0, 1), ("busy1", 1, 1), ("busy2", 2, 1), ("busy1-threads2", 1, 2)]


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per condition and block length")
    parser.add_argument("--out", type=Path, default=Path("results/machine"))
    args = parser.parse_args()
    case = Case(variant="standard", c_in=32, c_out=32, size=28)
    work = Workload(case)
    rows = []
    for label, busy, threads in CONDITIONS:
        procs = spinners(busy)
        time.sleep(0.5)
        load = machine.load()
        try:
            torch.set_num_threads(threads)
            with timer.pinned(timer.cores_for(threads)):
                probe = machine.Probe()
                for block_ms in (10, 40):
                    timer.warm_up(work.step, lambda: None, 0.05)
                    number = timer.calibrate(work.step, lambda: None, block_ms / 1e3)
                    end = time.monotonic() + args.seconds
                    while time.monotonic() < end:
                        p = probe.read()
                        per_call, check = machine.checked(lambda n=number: timer.time_block(work.step, lambda: None, n),
                                                          threads)
                        rows.append({"condition": label, "threads": threads, "block_ms": block_ms, "number": number,
                                     "per_call_s": per_call, "wall_s": check.wall, "cpu_share": check.cpu_share,
                                     "wait_share": check.wait_share, "steal_share": check.steal_share,
                                     "switches": check.switches, "probe_s": p,
                                     "contended": check.reason(threads) or "", "other_cores": load.get("other_cores")})
        finally:
            for p in procs:
                p.kill()
                p.wait()
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"contention-{machine_name()}-torch{torch.__version__}-{stamp}.csv"
    df.to_csv(path, index=False)
    summary = df.groupby(["condition", "block_ms"]).agg(
        blocks=("per_call_s", "size"), median_us=("per_call_s", lambda s: s.median() * 1e6),
        p90_us=("per_call_s", lambda s: s.quantile(0.9) * 1e6), cpu_p10=("cpu_share", lambda s: s.quantile(0.1)),
        wait_p90=("wait_share", lambda s: s.quantile(0.9)), contended=("contended", lambda s: (s != "").mean()),
        probe_us=("probe_s", lambda s: s.median() * 1e6))
    print(summary.round(3).to_string())
    print(f"→ {path}")


if __name__ == "__main__":
    main()

"""`sepbench timercheck` and `sepbench crosscheck`: does sepbench's timer agree with
torch.utils.benchmark.Timer, and do asv and pytest-benchmark agree with `sepbench run`?"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sepbench.console import bar, out, say_left_out
from sepbench.errors import SepbenchError
from sepbench.grid import Grid, group_cases
from sepbench.store import ensure_output_file, write_csv


def timer_agreement(grid: Grid, threads: int | None, limit: int | None, csv_path: Path | None) -> int:
    from sepbench.measure.runner import default_threads
    from sepbench.measure.timer import cores_for, pinned
    from sepbench.measure.timercheck import agreement
    from sepbench.measure.workload import require_device
    from sepbench.report.tables import timercheck_summary, timercheck_table

    if csv_path is not None:
        ensure_output_file(csv_path)
    cases = [c for g in group_cases(grid.expand()[0]) for c in g][:limit]
    if not cases:
        raise SepbenchError(f"grid {grid.name!r} holds no valid case to check")
    for d in {c.device for c in cases}:
        require_device(d)
    threads = threads or grid.measure.threads or default_threads(sorted({c.device for c in cases}))[0]
    rows = []
    with bar(spinner=False) as progress:
        task = progress.add_task("timing", total=len(cases))
        for case in cases:
            with pinned(cores_for(threads)):  # where `run` measures
                a = agreement(case, threads, grid.measure)
            rows.append({"case_id": case.id, "geometry": case.geometry(), "variant": case.label(), "threads": threads,
                         "sepbench_s": a.sepbench_s, "timer_s": a.timer_s, "events_s": a.events_s,
                         "sepbench_over_timer": a.ratio_timer, "sepbench_over_events": a.ratio_events})
            progress.advance(task)
    table = pd.DataFrame(rows)
    out.print(timercheck_table(table, threads))
    out.print(timercheck_summary(table), highlight=False)
    if csv_path is not None:
        write_csv(table, csv_path)
    return 0


def harness_agreement(results: list[Path], asv_dir: Path | None, pb_dir: Path | None, tolerance: float,
                      csv_path: Path | None) -> int:
    """Pass k of each harness against sepbench's pass k; exit 1 if any median ratio is outside 1 ± tolerance."""
    from sepbench.crosscheck import crosscheck
    from sepbench.report.tables import crosscheck_table

    if csv_path is not None:
        ensure_output_file(csv_path)
    folder = results[0] if results[0].is_dir() else results[0].parent
    asv_dir, pb_dir = asv_dir or folder / "asv", pb_dir or folder / "pytest-benchmark"
    for name, path in (("asv", asv_dir), ("pytest-benchmark", pb_dir)):
        if not path.is_dir():
            raise SepbenchError(f"no {name} results folder at {path}")
    left_out: list = []
    table = crosscheck(results, asv_dir, pb_dir, left_out)
    say_left_out(left_out)
    if csv_path is not None:
        write_csv(table, csv_path)
    out.print(crosscheck_table(table))
    ratios = table[["asv / sepbench", "pytest-benchmark / sepbench"]]
    outside = int(((ratios - 1).abs() > tolerance).to_numpy().sum())
    out.print(f"{len(table)} cases; ratios {ratios.min().min():.3f}–{ratios.max().max():.3f}; "
              f"{outside} outside ±{tolerance:.0%}", highlight=False)
    return 1 if outside else 0

"""`sepbench run`: measure a grid (or say what it would measure), then print its table and summary."""

from __future__ import annotations

from pathlib import Path

from sepbench import api
from sepbench.console import out
from sepbench.grid import Grid


def main(grid: Grid, axes: list[str], *, device: str | None, out_dir: Path, resume: bool,
         shard: str | None, threads: int | None, memory: bool, profile: bool, dry_run: bool, target: float | None,
         budget: float | None) -> int:
    if dry_run:
        plan = api.plan(grid, axes=axes, device=device, shard=shard, threads=threads)
        shard_note = f" (shard {shard})" if shard else ""
        out.print(f"{grid.name}{shard_note}: {len(plan.cases)} cases in {len(plan.groups)} groups on "
                  f"{', '.join(plan.devices) or 'no device'}", highlight=False)
        return 0
    found = api.run(grid, axes=axes, device=device, out=out_dir, resume=resume, shard=shard, threads=threads,
                    memory=memory, profile=profile, target=target, budget=budget)
    if not found.file.records:
        out.print(f"shard {shard} holds no valid case of this grid; {found.path} says so, and "
                  "`sepbench merge` counts it", highlight=False, soft_wrap=True)
        return 0
    from sepbench.report.tables import print_results

    df = found.table
    print_results(df, out)
    skipped = int((df["status"] == "skipped").sum())
    out.print(f"{found.measured} cases measured in {found.seconds:.0f} s"
              + (f" ({found.already_done} already done before --resume)" if found.already_done else "")
              + (f", {skipped} skipped" if skipped else "") + f" → {found.path}", highlight=False)
    for line in found.lines():
        out.print(line, highlight=False)
    return 0

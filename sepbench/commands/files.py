"""`sepbench show`, `merge` and `report`: what is in results files, whether shards make whole runs, and
the HTML report."""

from __future__ import annotations

from pathlib import Path

from sepbench.console import bar, out, say
from sepbench.errors import SepbenchError
from sepbench.grid import Grid


def show(results: list[Path]) -> int:
    """Print the merged table; damaged lines are named with path:line and refused (exit 2)."""
    from sepbench.report.tables import print_results
    from sepbench.store import load

    df, problems = load(results or [Path("results")])
    if len(df):
        print_results(df, out)
    for p in problems:
        if p.torn_tail:
            say(f"sepbench: note: {p}")
    damaged = [p for p in problems if not p.torn_tail]
    if damaged:
        more = f" (and {len(damaged) - 1} more damaged lines)" if len(damaged) > 1 else ""
        raise SepbenchError(f"damaged results: {damaged[0]}{more}")
    if not len(df):
        raise SepbenchError(f"no results found in {', '.join(map(str, results or [Path('results')]))}")
    return 0


def merge(results: list[Path], expected: Grid | None, out_dir: Path | None) -> int:
    """Shards checked to hold every case of their grid once per torch and device; with `out_dir`, each whole
    (grid, torch, device) written as one run. Any problem: each named, nothing merged, exit 2."""
    from sepbench.merge import coverage as grid_coverage
    from sepbench.merge import merge as write_merged
    from sepbench.report.tables import shards_table
    from sepbench.store import ensure_writable

    coverage, problems = grid_coverage(results, expected)
    out.print(shards_table(coverage))
    lines = [str(p) for p in problems] + [line for c in coverage for line in c.problems()]
    if not coverage and not lines:
        lines.append(f"no results files in {', '.join(map(str, results))}")
    for line in lines[:-1]:
        say(f"sepbench: {line}")
    if lines:
        raise SepbenchError(lines[-1] + (f" ({len(lines)} problems above and here; nothing merged)"
                                         if len(lines) > 1 else " (nothing merged)"))
    if out_dir is not None:
        ensure_writable(out_dir)
    for c in coverage:
        if out_dir is not None:
            out.print(f"{c.grid_name} · torch {c.torch} · {c.device}: {c.expected} cases → {write_merged(c, out_dir)}",
                      highlight=False)
        else:
            out.print(f"{c.grid_name} · torch {c.torch} · {c.device}: complete, {c.expected} cases", highlight=False)
    return 0


def report(results: list[Path], out_dir: Path, pb_dir: Path | None, asv_url: str | None) -> int:
    """Build the HTML report; results that are damaged are left out, listed on the page, and exit 2."""
    from sepbench.report.page import build
    from sepbench.store import ensure_writable

    results = results or [Path("results")]
    ensure_writable(out_dir)
    if pb_dir is None:
        found = (p / "pytest-benchmark" for p in results if p.is_dir())
        pb_dir = next((d for d in found if d.is_dir() and any(d.rglob("*.json"))), None)
    if asv_url is None and (out_dir / "asv" / "index.html").is_file():
        asv_url = "asv/"
    with bar(counts=False, transient=True) as progress:
        task = progress.add_task("report")
        built = build(results, out_dir, pytest_benchmark=pb_dir, asv_url=asv_url,
                      step=lambda what: progress.update(task, description=what))
    out.print(f"report: {built.index} ({built.records} records from {built.files} files, "
              f"{len(built.environments)} environments, {len(built.figures)} figures; "
              f"page {built.page_bytes / 1e6:.1f} MB, data {built.data_bytes / 1e6:.1f} MB) in {built.seconds:.1f} s",
              highlight=False)
    if built.damaged:
        more = f" and {len(built.damaged) - 1} more" if len(built.damaged) > 1 else ""
        raise SepbenchError(f"the report leaves out damaged results: {built.damaged[0]}{more} (listed on the page)")
    return 0

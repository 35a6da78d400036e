"""`sepbench ab`: compare two installs (or one under two settings), then print the table, the counts, the
control, the network's answer and the gate's verdict, which sets the exit code."""

from __future__ import annotations

from typing import Any

from sepbench import api
from sepbench.console import out
from sepbench.grid import Grid
from sepbench.results import ComparisonResult


def main(pythons: tuple[str, ...], grid: Grid | None, axes: list[str], **options: Any) -> int:
    return show(api.compare(*pythons, grid=grid, axes=axes, **options))


def show(found: ComparisonResult) -> int:
    """A finished comparison: its table (a network's sites by what they carry) and its lines."""
    from sepbench.report.tables import ab_table, network_ab_table

    header = found.file.header
    assert header is not None  # `ComparisonResult.of` refuses a file without one
    out.print(network_ab_table(found.network, header) if found.network is not None else
              ab_table(found.table, header))
    for line in found.lines():
        out.print(line, highlight=False)
    return found.exit_code

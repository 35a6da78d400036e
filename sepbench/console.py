"""Where sepbench speaks: the result on stdout, everything about the run (progress, the busy-machine line,
what was left out) on stderr, each a rich console that keeps full-width tables when piped or logged, and
progress bars that work in a terminal and in a notebook alike."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Piped or logged output keeps the tables' full width instead of rich's 80-column fallback.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def printable(text: str) -> str:
    """The text as one printable line: what no stream can encode (a lone surrogate from a file name
    that is not UTF-8) and what would break the line (a newline in a path) written as escapes, so the
    line that explains an error neither raises one nor becomes two lines."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def say(line: str) -> None:
    """One line about the run, on stderr, as it is (no markup read into a path or a name)."""
    err.print(printable(line), markup=False, highlight=False, soft_wrap=True)


def say_left_out(problems: list) -> None:
    """One line on stderr naming what a reader left out (damaged lines, files that are not results), so
    that no command works from less than it was given without a word; torn last lines of killed runs
    are expected and not named."""
    damaged = [p for p in problems if not getattr(p, "torn_tail", False)]
    if damaged:
        more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
        say(f"sepbench: left out {damaged[0]}{more}")


def bar(*, spinner: bool = True, counts: bool = True, transient: bool = False) -> Progress:
    """A progress bar on stderr with elapsed time and ETA."""
    columns: list[ProgressColumn] = [SpinnerColumn()] if spinner else []
    columns += [TextColumn("{task.description}", style="bold"), BarColumn()]
    if counts:
        columns += [MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    else:
        columns += [TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=transient)


class SittingsBar:
    """A run's progress (`measure.runner.Progress`) as a bar with ETA over the sittings left to take."""

    def __init__(self, progress: Progress) -> None:
        self.bar = progress
        self.task: TaskID | None = None

    def start(self, total: int) -> None:
        self.task = self.bar.add_task("starting", total=total)

    def grow(self, more: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, total=(self.bar.tasks[self.task].total or 0) + more)

    def update(self, advance: int, label: str) -> None:
        if self.task is None:
            self.bar.console.print(f"[dim]{label}…[/dim]")
            return
        self.bar.update(self.task, advance=advance, description=label)

"""Drawing the report's figures: planned while the page's data is derived (`Plan.figure`), then drawn all
at once (`draw`), in forked processes where the platform can fork: matplotlib draws on one core, and a
report has a dozen or more figures. A drawing process ends when the build that forked it ends, however
it ends (kill -9 included)."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import re
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl(2)
FORMAT = "webp"  # lossless WebP: a fifth smaller than the same palette PNG, and every browser reads it


def anchor(prefix: str, path: Path) -> str:
    """A page id from a results file's name (which holds what it measured and when): unique per file."""
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9]+", "-", path.stem).strip("-")


@dataclass
class Figure:
    """A figure on the page: its anchor, heading, image (relative to the page) and alt text."""

    id: str
    title: str
    src: str
    alt: str


@dataclass
class Plan:
    """The figures a page will show, each a drawing job `draw(*data, path)` into this build's own folder."""

    img: Path  # the folder the figures are drawn into
    folder: str  # its name, as the page refers to it
    jobs: list[partial[Path]] = field(default_factory=list)

    def figure(self, name: str, draw: Callable[..., Path], *args: object, title: str = "", alt: str = "") -> Figure:
        """Plan a figure: `draw(*args, path)` runs later, with the others, in parallel."""
        self.jobs.append(partial(draw, *args, self.img / f"{name}.{FORMAT}"))
        return Figure(f"fig-{name}", title or name.replace("-", " "), f"{self.folder}/{name}.{FORMAT}",
                      alt or title or name)


def _die_with_parent() -> None:
    """A drawing worker ends when the build that forked it ends, however it ends (kill -9 included):
    Linux delivers SIGKILL to the worker when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown is what remains
        return
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)


def draw(jobs: list[partial[Path]]) -> list[Path]:
    """Run the drawing jobs (each `draw(*data, path)`), in forked processes where the platform can
    fork: matplotlib draws on one core, and a report has a dozen or more figures."""
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers < 2 or "fork" not in mp.get_all_start_methods():
        return [job() for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_die_with_parent) as pool:
        return list(pool.map(_run, jobs))


def _run(job: partial[Path]) -> Path:
    return job()

"""Does sepbench's timer agree with the reference? Each case is timed by sepbench and by
`torch.utils.benchmark.Timer` (and on CUDA by CUDA events too), alternating so that drift hits
every method alike; the ratios of medians are what a user checks before trusting a run."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.benchmark import Timer

from sepbench.case import Case
from sepbench.grid import MeasureSettings
from sepbench.measure.timer import calibrate, intra_op_threads, measure_interleaved, synchronizer, warm_up
from sepbench.measure.workload import Workload, backend_flags

REPEATS = 5
MIN_RUN_TIME = 0.2  # both methods get at least Timer's default run time


@dataclass(frozen=True)
class Agreement:
    case: Case
    sepbench_s: float
    timer_s: float
    events_s: float | None  # CUDA only

    @property
    def ratio_timer(self) -> float:
        return self.sepbench_s / self.timer_s

    @property
    def ratio_events(self) -> float | None:
        return self.sepbench_s / self.events_s if self.events_s else None


def _sepbench(step: Callable[[], None], device: str, threads: int, s: MeasureSettings) -> float:
    """sepbench's timer as `run` uses it: contended blocks re-taken, the probe read each round."""
    timing = measure_interleaved({"x": step}, synchronizer(device), threads=threads, cpu_bound=device != "cuda",
                                 **s.interleaved(min_run_time=max(s.min_run_time, MIN_RUN_TIME)))
    return timing["x"].median


def _timer(step: Callable[[], None], threads: int, s: MeasureSettings) -> float:
    return Timer("step()", globals={"step": step}, num_threads=threads).blocked_autorange(
        min_run_time=max(s.min_run_time, MIN_RUN_TIME)).median


def _events(step: Callable[[], None], s: MeasureSettings) -> float:
    """Median per-iteration time of calibrated blocks bracketed by CUDA events."""
    sync = torch.cuda.synchronize
    warm_up(step, sync, s.warmup_time)
    number = calibrate(step, sync, s.block_time)
    times = []
    for _ in range(max(s.min_rounds, 10)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / number)
    return statistics.median(times)


def agreement(case: Case, threads: int, settings: MeasureSettings) -> Agreement:
    work = Workload(case)
    ours, ref, ev = [], [], []
    methods = [lambda: ours.append(_sepbench(work.step, case.device, threads, settings)),
               lambda: ref.append(_timer(work.step, threads, settings))]
    if case.device == "cuda":
        methods.append(lambda: ev.append(_events(work.step, settings)))
    with intra_op_threads(threads), backend_flags(case):
        for r in range(REPEATS):  # rotate which method goes first, so order effects cancel
            for measure in methods[r % len(methods):] + methods[: r % len(methods)]:
                measure()
    return Agreement(case, statistics.median(ours), statistics.median(ref), statistics.median(ev) if ev else None)

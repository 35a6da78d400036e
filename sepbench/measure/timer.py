"""Wall-clock timing that agrees with `torch.utils.benchmark.Timer`, interleaved across variants.

Why not call Timer directly: realized speedup needs *paired* samples. The variants of one case are
timed in rounds, one block of each per round (A B C, B C A, …), so slow drift in clock speed or
background load hits every variant alike and the per-round ratios can be bootstrapped.

What Timer gets right is kept: a warm-up that outlasts first-call effects (oneDNN primitive
creation, cuDNN autotuning, lazy loading), blocks long enough that the timer's own overhead is
negligible, CUDA synchronized at block edges, and the intra-op thread count set and recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from sepbench.errors import SepbenchError
from sepbench.speedup import spread

Fn = Callable[[], object]


@dataclass
class Timing:
    """Per-iteration seconds of each timed block of one variant, plus how they were taken."""

    times: list[float]
    number: int  # iterations per block
    warmup_calls: int = 0
    remeasured: bool = False
    unstable: bool = False
    quantiles: tuple[float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        q1, med, q3 = np.percentile(self.times, [25, 50, 75])
        self.quantiles = (float(q1), float(med), float(q3))

    @property
    def median(self) -> float:
        return self.quantiles[1]

    @property
    def iqr(self) -> float:
        return self.quantiles[2] - self.quantiles[0]

    @property
    def relative_iqr(self) -> float:
        return self.iqr / self.median


def synchronizer(device: str) -> Callable[[], None]:
    """What to call at block edges: CUDA work is asynchronous, CPU work is not."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_threads(n: int) -> None:
    """Refuse an intra-op thread count outside 1 and the available cores: more threads than cores
    only measure the scheduler."""
    cores = available_cores()
    if not 1 <= n <= cores:
        raise SepbenchError(f"{n} threads, but this machine gives sepbench {cores} cores; use 1–{cores}")


@contextmanager
def intra_op_threads(n: int) -> Iterator[int]:
    """Set torch's intra-op thread count for the block, restore it afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def cores_for(threads: int) -> list[int]:
    """The last `threads` cores this process may use: where a measurement pins itself. A block's speed
    depends on the core it lands on; on a 2-vCPU VM pinning halved the spread of paired blocks."""
    return sorted(os.sched_getaffinity(0))[-threads:]


@contextmanager
def pinned(cores: list[int]) -> Iterator[list[int]]:
    """Run the block on these cores only, then give the process back the cores it had."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield cores
    finally:
        os.sched_setaffinity(0, before)


def time_block(fn: Fn, sync: Callable[[], None], number: int) -> float:
    """Seconds per iteration over one block of `number` back-to-back calls."""
    sync()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    sync()
    return (time.perf_counter() - start) / number


def warm_up(fn: Fn, sync: Callable[[], None], min_time: float, min_calls: int = 3) -> int:
    """Call until both `min_calls` and `min_time` are reached; return the number of calls."""
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_time:
        fn()
        sync()
        calls += 1
    return calls


def calibrate(fn: Fn, sync: Callable[[], None], block_time: float) -> int:
    """Iterations per block so that one block lasts at least `block_time` seconds."""
    number = 1
    while True:
        per_call = time_block(fn, sync, number)
        if per_call * number >= block_time:
            return number
        # Aim a little past the target so the next try usually ends the search.
        number = max(number * 2, int(1.2 * block_time / max(per_call, 1e-9)))


def measure_interleaved(
    fns: Mapping[str, Fn],
    sync: Callable[[], None],
    *,
    min_run_time: float,
    min_rounds: int,
    max_rounds: int,
    block_time: float,
    warmup_time: float,
) -> dict[str, Timing]:
    """Time several callables in interleaved rounds; each gets one block per round."""
    names = list(fns)
    warm = {n: warm_up(fns[n], sync, warmup_time) for n in names}
    numbers = {n: calibrate(fns[n], sync, block_time) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0.0)
    for r in range(max_rounds):
        if r >= min_rounds and min(spent.values()) >= min_run_time:
            break
        for n in names[r % len(names):] + names[: r % len(names)]:
            t = time_block(fns[n], sync, numbers[n])
            times[n].append(t)
            spent[n] += t * numbers[n]
    return {n: Timing(times[n], numbers[n], warm[n]) for n in names}


def measure_stable(
    fns: Mapping[str, Fn], sync: Callable[[], None], *, unstable_threshold: float, baseline: str | None = None,
    **settings: float,
) -> dict[str, Timing]:
    """Interleaved timing, measured once more when it is not steady enough (pairing needs the same
    rounds for all, so the whole group goes again).

    Steady means: with a `baseline`, every variant's per-round speedup over it has IQR / median
    within the threshold (what the run reports; drift common to a round cancels); without one, every
    callable's raw block times do. Each Timing's `unstable` says whether its raw block times still
    spread beyond the threshold: drift the machine went through, named apart from a speedup's."""

    def steady(timings: dict[str, Timing]) -> bool:
        if baseline in timings and len(timings) > 1:
            base = timings[baseline].times
            return all(spread(base, t.times) <= unstable_threshold for n, t in timings.items() if n != baseline)
        return all(t.relative_iqr <= unstable_threshold for t in timings.values())

    timings = measure_interleaved(fns, sync, **settings)
    if not steady(timings):
        timings = measure_interleaved(fns, sync, **settings)
        for t in timings.values():
            t.remeasured = True
    for t in timings.values():
        t.unstable = t.relative_iqr > unstable_threshold
    return timings

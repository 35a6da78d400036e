"""Wall-clock timing that agrees with `torch.utils.benchmark.Timer`, interleaved across variants.

Why not call Timer directly: realized speedup needs *paired* samples. The variants of one case are
timed in rounds, one block of each per round (A B C, B C A, …), so slow drift in clock speed or
background load hits every variant alike. The rounds come in sittings, each on freshly built
tensors: a ratio keeps a value of its own for one set of tensors and one moment, so the sittings,
not the rounds, are the independent draws an interval is taken over (`SittingTally`; `sepbench run`
spreads a group's sittings over the whole run).

What Timer gets right is kept: a warm-up that outlasts first-call effects (oneDNN primitive
creation, cuDNN autotuning, lazy loading), blocks long enough that the timer's own overhead is
negligible, CUDA synchronized at block edges, and the intra-op thread count set and recorded.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from sepbench.errors import SepbenchError
from sepbench.measure import compiled, machine
from sepbench.speedup import realized_speedup

Fn = Callable[[], object]


@dataclass
class Timing:
    """Per-iteration seconds of each timed block of one variant, plus how they were taken."""

    times: list[float]
    number: int  # iterations per block
    warmup_calls: int = 0
    log: RoundLog | None = None  # shared by the variants timed together
    sittings: list[int] | None = None  # rounds in each sitting, in order (None: one sitting)
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


def calibrate(fn: Fn, sync: Callable[[], None], block_time: float, tries: int = 3) -> int:
    """Iterations per block so that one block lasts at least `block_time` seconds.

    The call's time is the best of `tries` blocks, not the first: a first block that lands in a
    preemption would otherwise make every block one call long, and each later preemption would then
    hit a whole block. A call shorter than the block never gets a block of one call."""
    number = 1
    while True:
        per_call = time_block(fn, sync, number)
        if per_call * number >= block_time / 4 or number >= 1 << 24:
            break
        number = max(number * 2, int(0.3 * block_time / max(per_call, 1e-9)))
    best = min([per_call, *(time_block(fn, sync, number) for _ in range(tries - 1))])
    return max(1, math.ceil(block_time / max(best, 1e-12)))


# A contended block is timed again at once, in its round, up to this many times; the retakes of a
# group are bounded by its kept blocks, so a machine that is never free cannot stall a run.
MAX_RETAKES = 3


@dataclass
class RoundLog:
    """What the machine did while a group was timed: the reference probe before each kept round,
    the blocks timed again and why, and why the rounds stopped."""

    probe_s: list[float] = field(default_factory=list)
    retaken: Counter[str] = field(default_factory=Counter)  # blocks measured again, by reason
    kept_contended: int = 0  # contended blocks kept once the retakes were spent
    blocks: int = 0  # blocks kept
    stop: str = ""  # "target", "budget", "rounds" (min_rounds/min_run_time reached, or max_rounds)
    seconds: float = 0.0  # wall time of the group's timing, warm-up and calibration included
    recompiled: int = 0  # graphs torch.compile compiled while blocks were timed (0 for eager code)

    @property
    def retaken_total(self) -> int:
        return sum(self.retaken.values())


def _checked_block(fn: Fn, sync: Callable[[], None], number: int, threads: int, cpu_bound: bool,
                   log: RoundLog) -> float:
    """One block, timed again while the machine did not give it the CPU (bounded)."""
    for attempt in range(MAX_RETAKES + 1):
        per_call, check = machine.checked(lambda: time_block(fn, sync, number), threads)
        why = check.reason(threads, cpu_bound=cpu_bound)
        if why is None:
            break
        if attempt == MAX_RETAKES or log.retaken_total >= max(log.blocks, 1):
            log.kept_contended += 1
            break
        log.retaken[why] += 1
    log.blocks += 1
    return per_call


Baselines = str | Mapping[str, str]  # one baseline for all, or each member's own (compiled against compiled)


def _baseline_of(baseline: Baselines, name: str) -> str:
    return baseline if isinstance(baseline, str) else baseline.get(name, name)


def narrow_enough(times: Mapping[str, list[float]], baseline: Baselines, target: float,
                  sittings: list[int] | None = None, between: float = 0.0) -> bool:
    """Whether every variant's realized-speedup interval (the between-run component `between` in it)
    lies within ±target of its ratio."""
    for name, t in times.items():
        base_name = _baseline_of(baseline, name)
        if name == base_name or base_name not in times:
            continue
        s = realized_speedup(times[base_name], t, sittings, between=between)
        if s.low is None or s.high is None or (s.high - s.low) / 2 / s.ratio > target:
            return False
    return True


def measure_interleaved(
    fns: Mapping[str, Fn],
    sync: Callable[[], None],
    *,
    min_run_time: float,
    min_rounds: int,
    max_rounds: int,
    block_time: float,
    warmup_time: float,
    threads: int = 1,
    baseline: str | None = None,
    target: float | None = None,
    allowance: float | None = None,
    probe: bool = True,
    cpu_bound: bool = True,
    numbers: Mapping[str, int] | None = None,
    first_round: int = 0,
) -> dict[str, Timing]:
    """Time several callables in interleaved rounds; each gets one block per round.

    Every block is checked for contention (`machine`) and timed again when it lost the CPU. Before
    each round the reference probe is read. With a `baseline` and a `target`, rounds go on until every
    variant's speedup interval is within ±target, or `allowance` seconds are spent, or `max_rounds`;
    without, until `min_rounds` and `min_run_time` are reached. `cpu_bound` is False where the host
    thread waits on a device (CUDA), so its CPU share says nothing. `numbers` (calls per block, from
    an earlier sitting of the same callables) skips the calibration; `first_round` continues the order's
    rotation where an earlier sitting left it, so no variant keeps one position in every sitting."""
    started = time.perf_counter()
    names = list(fns)
    warm = {n: warm_up(fns[n], sync, warmup_time) for n in names}
    numbers = dict(numbers) if numbers else {n: calibrate(fns[n], sync, block_time) for n in names}
    log = RoundLog(stop="rounds")
    reference = machine.Probe() if probe else None
    graphs_before = compiled.graphs()
    times: dict[str, list[float]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0.0)
    checkpoint = min_rounds
    for r in range(max_rounds):
        if r >= min_rounds and min(spent.values()) >= min_run_time:
            if target is None or baseline not in times:
                break
            if r >= checkpoint:  # the interval is costly: looked at after ~25 % more rounds each time
                checkpoint = r + max(2, r // 4)
                if narrow_enough(times, baseline, target):
                    log.stop = "target"
                    break
            if allowance is not None and time.perf_counter() - started >= allowance:
                log.stop = "budget"
                break
        if reference is not None:
            log.probe_s.append(reference.read())
        turn = (r + first_round) % len(names)
        for n in names[turn:] + names[:turn]:
            t = _checked_block(fns[n], sync, numbers[n], threads, cpu_bound, log)
            times[n].append(t)
            spent[n] += t * numbers[n]
    log.seconds = time.perf_counter() - started
    log.recompiled = compiled.graphs() - graphs_before
    return {n: Timing(times[n], numbers[n], warm[n], log=log) for n in names}


# One sitting: (rounds, calls per block from the first sitting or None, rounds taken before it) → each
# variant's Timing.
Sitting = Callable[[int, "Mapping[str, int] | None", int], "dict[str, Timing]"]


@dataclass
class SittingTally:
    """A group's sittings so far, wherever in the run they were taken: each variant's block times, the
    rounds of each sitting, the first sitting's calls per block and warm-up calls, and the merged log."""

    times: dict[str, list[float]] = field(default_factory=dict)
    sittings: list[int] = field(default_factory=list)
    numbers: dict[str, int] | None = None
    warmup_calls: dict[str, int] = field(default_factory=dict)
    log: RoundLog = field(default_factory=lambda: RoundLog(stop="rounds"))

    @property
    def rounds(self) -> int:
        return sum(self.sittings)

    def add(self, got: Mapping[str, Timing]) -> None:
        """Count in one sitting's timings (each variant's, sharing one log)."""
        first = next(iter(got.values()))
        if self.numbers is None:
            self.numbers = {n: t.number for n, t in got.items()}
            self.warmup_calls = {n: t.warmup_calls for n, t in got.items()}
        for n, t in got.items():
            self.times.setdefault(n, []).extend(t.times)
        part = first.log or RoundLog()
        self.log.probe_s += part.probe_s
        self.log.retaken.update(part.retaken)
        self.log.kept_contended += part.kept_contended
        self.log.blocks += part.blocks
        self.log.seconds += part.seconds
        self.log.recompiled += part.recompiled
        self.sittings.append(len(first.times))

    def narrow(self, baseline: Baselines, target: float, between: float = 0.0) -> bool:
        known = baseline in self.times if isinstance(baseline, str) else bool(set(baseline.values()) & set(self.times))
        return known and narrow_enough(self.times, baseline, target, self.sittings, between)

    def timings(self) -> dict[str, Timing]:
        numbers = self.numbers or {}
        return {n: Timing(t, numbers[n], self.warmup_calls.get(n, 0), log=self.log, sittings=self.sittings)
                for n, t in self.times.items()}


def measure_sittings(sit: Sitting, *, baseline: str, target: float | None, allowance: float | None,
                     sitting_rounds: int, min_sittings: int, max_rounds: int,
                     between: float = 0.0) -> dict[str, Timing]:
    """Time a group in consecutive sittings until every variant's interval over sittings (with the
    between-run component `between` in it) is within ±target, or `allowance` seconds are spent, or
    `max_rounds` rounds are taken; at least `min_sittings`.
    (`sepbench run` spreads a group's sittings over the whole run instead: `runner`.)

    `sit` takes each sitting on fresh tensors (`measure.sitting`). A ratio keeps a value of its own for
    one set of tensors and one moment, far more than it moves between the rounds of one sitting
    (`benchmarks/sittings.py`), so the sittings are the independent draws an interval needs."""
    started = time.perf_counter()
    tally = SittingTally()
    while True:
        tally.add(sit(sitting_rounds, tally.numbers, tally.rounds))
        if len(tally.sittings) >= min_sittings:
            if target is None or baseline not in tally.times:  # no interval to wait for
                break
            if tally.narrow(baseline, target, between):
                tally.log.stop = "target"
                break
            if allowance is not None and time.perf_counter() - started >= allowance:
                tally.log.stop = "budget"
                break
        if tally.rounds >= max_rounds:
            break
    return tally.timings()


# A reason is named where the data show it beyond their own noise: at this significance level (each test
# compares the signal with its own scatter, so no threshold depends on how noisy the machine is).
REASON_P = 0.01
# Blocks re-taken past this share of the blocks kept: the machine took the CPU from the group.
CONTENDED_SHARE = 0.25


def diagnose(base_times: list[float], times: list[float], log: RoundLog | None,
             sittings: list[int] | None = None) -> str:
    """Why a speedup's interval stayed wide, from the rounds' ratios (each test against their own noise):
    'contended' (the machine took the CPU from the blocks), 'drifting' (the ratio follows the machine's
    speed, as the probe read it before each round, or trends over the run), 'bimodal' (the per-round ratios
    fall in two clusters), 'sittings' (each sitting on fresh tensors keeps a ratio of its own, further apart
    than its rounds), or 'noisy' (none of these: the layer's own jitter)."""
    if log is not None and (log.kept_contended or log.retaken_total > CONTENDED_SHARE * max(log.blocks, 1)):
        return "contended"
    ratios = np.log(np.asarray(base_times) / np.asarray(times))
    if len(ratios) < 8:
        return "noisy"
    from scipy import stats

    order = np.arange(len(ratios))
    probe = np.asarray(log.probe_s) if log is not None else np.empty(0)
    for against in ([probe] if len(probe) == len(ratios) else []) + [order]:
        if np.ptp(against) > 0 and np.ptp(ratios) > 0 and stats.spearmanr(against, ratios).pvalue < REASON_P:
            return "drifting"
    if _bimodal(ratios):
        return "bimodal"
    if sittings and len(sittings) >= 3 and min(sittings) >= 2 and sum(sittings) == len(ratios):
        parts = np.split(ratios, np.cumsum(sittings)[:-1])
        if np.ptp(ratios) > 0 and stats.kruskal(*parts).pvalue < REASON_P:
            return "sittings"
    return "noisy"


def _bimodal(ratios: np.ndarray) -> bool:
    """Whether the ratios' middle 60 % has one gap far wider than the scatter on either side of it."""
    ordered = np.sort(ratios)
    k = len(ordered) // 5
    gaps = np.diff(ordered[k:len(ordered) - k])
    if not len(gaps):
        return False
    cut = k + int(np.argmax(gaps))
    low, high = ordered[: cut + 1], ordered[cut + 1:]
    within = max(float(np.median(np.abs(low - np.median(low)))),
                 float(np.median(np.abs(high - np.median(high)))), 1e-12)
    return float(np.max(gaps)) > 4 * within

"""Where a step's time goes, stage by stage: a few steps under `torch.profiler`, after the timing.

Mapping (exact, not sampled). One step is profiled with a `record_function` range around every
module's forward (pre-hook / hook), named after the module's qualified name. A *unit* is a profiled
op that no other op encloses; an autograd node (ConvolutionBackward0) is the unit of its backward. A
forward unit belongs to the innermost module range around it; a backward unit to the module whose
forward op created it (the profiler gives both the same sequence number). Then the hooks come off and
`steps` more steps are profiled: a step runs the same units in the same order, so the i-th unit of a
timed step belongs where the i-th unit of the mapped one did (checked name by name; if the order
differs, the hooked steps are the timed ones and the record says so). The hooks' Python cost thus
stays out of the times.

Every unit lands in exactly one stage or one named overhead:
- a stage: a module's own ops (a conv, a BatchNorm, the SE block's gate multiply, the residual add of
  an inverted residual, which is its top module's own op, named `(module)`);
- `layout`: copies and format conversions (`aten::copy_`, `contiguous`, `to`, …) wherever they run;
- `grad accumulation`: the autograd engine adding into `.grad`, which no forward op created (the
  engine's own ops for a node, such as reducing a broadcast gradient, go with the node's stage);
- `unstaged`: ops outside every module (none in the zoo; a user's module may have some);
- `framework`: on the CPU, the step's wall time that no unit covers: Python, the dispatcher, the
  autograd engine's own work;
- `device idle` (CUDA): the step's wall time during which no kernel ran.

On the CPU a unit's time is its span on the host; on CUDA a stage's time is the device time of the
kernels its units launched (the profiler correlates launch and kernel), and the host side shows as
device idle. The profiler costs a little per event it records; that cost is measured on this machine
(`event_cost`) and taken off each unit by the events inside it, and off the step by all of its
events, so the parts add up to the step as the timer saw it, not as the profiler slowed it.

Profiling never touches the timed blocks: the runner calls it after a group's timing, on the same
built workloads, and the hooks are removed before it returns.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, record_function
from torch.profiler import profile as _profile

from sepbench.case import Case
from sepbench.measure.peaks import Peaks
from sepbench.measure.timer import synchronizer, warm_up
from sepbench.measure.workload import Workload
from sepbench.records import Attribution, StageFigures
from sepbench.theory import Cost, case_cost

STEP = "sepbench.step"
MAP = "sepbench.map"
MODULE = "sepbench.module:"
ENGINE = "autograd::engine::evaluate_function"
ROOT = "(module)"  # the case's top module, for the ops its own forward runs (the residual add)
LAYOUT_OPS = frozenset({
    "aten::copy_", "aten::contiguous", "aten::clone", "aten::to", "aten::_to_copy", "aten::to_dense",
    "aten::to_mkldnn", "aten::_to_dense", "aten::_mkldnn_reshape", "aten::mkldnn_reorder_conv2d_weight",
})
CPU_OVERHEADS = ("layout", "grad accumulation", "unstaged", "framework")
CUDA_OVERHEADS = ("layout", "grad accumulation", "unstaged", "device idle")
STEPS = 7
WARM_CALLS, WARM_S = 3, 0.02  # warm-up: calls after the profiler starts; seconds before it


@dataclass(frozen=True)
class Profiled:
    """One case's step, decomposed: seconds per stage and per named overhead (medians over the
    profiled steps, the profiler's own cost taken off), and the step's wall time as profiled."""

    stages: dict[str, float]  # module name → seconds per step
    kinds: dict[str, str]  # module name → class name
    overheads: dict[str, float]
    wall_s: float  # profiled step, less the profiler's cost of its events
    raw_wall_s: float  # profiled step as it ran
    events: float  # profiler events per step
    steps: int
    method: str  # "positions" (hooks on a mapping step only) or "hooks" (order differed; hooks on throughout)
    device_busy_s: float | None = None  # CUDA: kernel time per step
    profile_s: float = 0.0  # what profiling this case cost, start to finish (its part of a run's wall time)

    @property
    def total_s(self) -> float:
        return sum(self.stages.values()) + sum(self.overheads.values())


@contextmanager
def _stderr_to_null() -> Iterator[None]:
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@contextmanager
def profile(activities: list) -> Iterator:
    """`torch.profiler.profile`, with the line its client library writes to stderr at every start and
    stop (no setting turns it off) sent to /dev/null: a run profiles every case."""
    with _stderr_to_null():
        prof = _profile(activities=activities)
        prof.__enter__()
    try:
        yield prof
    finally:
        with _stderr_to_null():
            prof.__exit__(None, None, None)


def _hook_modules(module: nn.Module, stack: ExitStack) -> None:
    """A `record_function` range around every module's forward, named after its qualified name."""
    open_ranges: dict[int, list] = defaultdict(list)

    def enter(name: str) -> Callable:
        def pre(mod: nn.Module, args: tuple) -> None:
            r = record_function(MODULE + (name or ROOT))
            r.__enter__()
            open_ranges[id(mod)].append(r)
        return pre

    def leave(mod: nn.Module, args: tuple, output: object) -> None:
        if open_ranges[id(mod)]:
            open_ranges[id(mod)].pop().__exit__(None, None, None)

    for name, m in module.named_modules():
        stack.callback(m.register_forward_pre_hook(enter(name)).remove)
        stack.callback(m.register_forward_hook(leave).remove)


def _is_op(e: FunctionEvent) -> bool:
    return not e.name.startswith((MODULE, STEP, MAP, ENGINE))


def _ancestors(e: FunctionEvent):
    parent = e.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def _is_unit(e: FunctionEvent) -> bool:
    return _is_op(e) and not any(_is_op(p) for p in _ancestors(e))


def _is_node(e: FunctionEvent) -> bool:
    return e.cpu_parent is not None and e.cpu_parent.name.startswith(ENGINE)


def _module_of(e: FunctionEvent) -> str | None:
    return next((p.name[len(MODULE):] for p in _ancestors(e) if p.name.startswith(MODULE)), None)


def _walk(e: FunctionEvent):
    yield e
    for child in e.cpu_children:
        yield from _walk(child)


def _descendants(e: FunctionEvent) -> int:
    return sum(1 for _ in _walk(e)) - 1


def _steps(events: list[Any], name: str) -> list[tuple[Any, list[Any]]]:
    """Each step profiled under the range `name`, with its units in start order."""
    steps = sorted((e for e in events if e.name == name), key=lambda e: e.time_range.start)
    units: dict[int, list] = {id(s): [] for s in steps}
    for e in events:
        if _is_unit(e):
            step = next((p for p in _ancestors(e) if p.name == name), None)
            if step is None and _is_node(e):
                # On CUDA the autograd engine runs backward on a thread of its own: no range of the
                # step encloses it there, so it belongs to the step whose span holds its start.
                step = next((s for s in steps if s.time_range.start <= e.time_range.start <= s.time_range.end),
                            None)
            if step is not None:
                units[id(step)].append(e)
    return [(s, sorted(units[id(s)], key=lambda e: e.time_range.start)) for s in steps]


def _owners(units: list) -> list[str]:
    """Where each unit of a hooked step belongs: 'stage:NAME' or 'overhead:NAME'."""
    # A forward op's sequence number may sit on an op inside the unit (aten::linear calls aten::addmm,
    # which records AddmmBackward0): every op of a forward unit maps to the unit's module.
    forward: dict[int, str | None] = {}
    for e in units:
        if not _is_node(e):
            for op in _walk(e):
                if op.sequence_nr >= 0:
                    forward.setdefault(op.sequence_nr, _module_of(e))
    owners = []
    for e in units:
        if e.name in LAYOUT_OPS:
            owners.append("overhead:layout")
            continue
        # Under the engine, the sequence number is the node's (on its `evaluate_function`): the engine
        # also runs ops there itself, such as summing a broadcast gradient back to its input's shape.
        owner = forward.get(e.cpu_parent.sequence_nr) if _is_node(e) else _module_of(e)
        if owner is not None:
            owners.append(f"stage:{owner}")
        else:
            owners.append("overhead:grad accumulation" if _is_node(e) else "overhead:unstaged")
    return owners


def _device_s(e: FunctionEvent) -> float:
    total = getattr(e, "device_time_total", None)
    if total is None:
        total = getattr(e, "cuda_time_total", 0.0)
    return float(total or 0.0) * 1e-6


def event_cost(repeats: int = 5, calls: int = 2000) -> float:
    """Seconds the CPU profiler adds per event it records, on this machine: a cheap op called
    `calls` times with and without it (median over `repeats`)."""
    x, y = torch.zeros(8), torch.empty(8)

    def loop() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            torch.neg(x, out=y)
        return time.perf_counter() - start

    costs = []
    for _ in range(repeats):
        plain = loop()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            profiled = loop()
        costs.append(max(profiled - plain, 0.0) / max(len(prof.events()), 1))
    return statistics.median(costs)


@dataclass(frozen=True)
class _Step:
    start_us: float
    end_us: float
    events: int  # profiler events recorded in it
    units: list


def _ranged(events: list, name: str) -> list[_Step]:
    return [_Step(s.time_range.start, s.time_range.end, _descendants(s), units) for s, units in _steps(events, name)]


def _chunked(events: list, after_us: float, names: list[str], steps: int) -> list[_Step] | None:
    """The timed steps, found without a range of their own: a `record_function` costs Python time per
    step on the order of a small layer's, so the timed steps run bare, back to back, and are
    told apart by their units (each step runs the mapped step's units in the same order). A step
    lasts from its first unit's start to the next step's; the last step run only marks that end.
    None when the units do not split into steps of the mapped order."""
    units = sorted((e for e in events if _is_unit(e) and e.time_range.start > after_us),
                   key=lambda e: e.time_range.start)
    k = len(names)
    if not k or len(units) < (steps + 1) * k or len(units) % k:
        return None
    units = units[-(steps + 1) * k:]
    chunks = [units[i * k:(i + 1) * k] for i in range(steps + 1)]
    if any([e.name for e in chunk] != names for chunk in chunks):
        return None
    starts = sorted(e.time_range.start for e in events)
    found = []
    for chunk, following in itertools.pairwise(chunks):
        begin, end = chunk[0].time_range.start, following[0].time_range.start
        found.append(_Step(begin, end, bisect.bisect_left(starts, end) - bisect.bisect_left(starts, begin), chunk))
    return found


def _bare_steps(step: Callable[[], None], sync: Callable[[], None], steps: int) -> None:
    """A few warm steps, then the timed ones and one more that marks where the last timed one ends."""
    warm_up(step, sync, 0.0, WARM_CALLS + steps + 1)


def _ranged_steps(step: Callable[[], None], sync: Callable[[], None], steps: int) -> None:
    warm_up(step, sync, 0.0, WARM_CALLS)
    for _ in range(steps):
        with record_function(STEP):
            step()
            sync()


def profile_case(step: Callable[[], None], module: nn.Module, sync: Callable[[], None], device: str,
                 cost_per_event: float, steps: int = STEPS) -> Profiled:
    """One profiler session: a hooked step that maps units to stages, then the hooks off, a warm-up
    and `steps` timed steps, each split into stages and overheads."""
    started = time.perf_counter()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    # A step that follows a pause runs up to 3× slower and takes a few steps to recover (caches
    # refilled); the timer's blocks never see that, so neither may the profiled steps. Warm up before
    # the profiler starts (its events would cost more to parse than the steps), and again after.
    warm_up(step, sync, WARM_S, WARM_CALLS)
    with profile(activities) as prof:
        with ExitStack() as hooks:
            _hook_modules(module, hooks)
            with record_function(MAP):
                step()
                sync()
        _bare_steps(step, sync, steps)
    events = prof.events()
    mapped = _steps(events, MAP)
    units = mapped[0][1] if mapped else []
    owners, names = _owners(units), [e.name for e in units]
    map_end = max((e.time_range.end for e in events if e.name == MAP), default=0.0)
    timed, method = _chunked(events, map_end, names, steps), "positions"
    if timed is None:
        # The op order changed between steps: time hooked steps, each in a range and mapped directly.
        with profile(activities) as prof, ExitStack() as hooks:
            _hook_modules(module, hooks)
            _ranged_steps(step, sync, steps)
        timed, method = _ranged(prof.events(), STEP), "hooks"
    kinds = {name or ROOT: type(m).__name__ for name, m in module.named_modules()}
    found = _decompose(timed, owners, kinds, device, cost_per_event, method)
    return dataclasses.replace(found, profile_s=time.perf_counter() - started)


def _decompose(timed: list[_Step], owners: list[str], kinds: dict[str, str], device: str, cost_per_event: float,
               method: str) -> Profiled:
    per_step: list[dict[str, float]] = []
    walls, raw_walls, events, busy = [], [], [], []
    for step in timed:
        mine = owners if method == "positions" else _owners(step.units)
        parts: dict[str, float] = defaultdict(float)
        raw = (step.end_us - step.start_us) * 1e-6
        wall = max(raw - cost_per_event * step.events, 0.0) if device != "cuda" else raw
        for unit, owner in zip(step.units, mine, strict=True):
            if device == "cuda":
                seconds = _device_s(unit)
            else:
                seconds = max(unit.time_range.elapsed_us() * 1e-6 - cost_per_event * (1 + _descendants(unit)), 0.0)
            parts[owner] += seconds
        covered = sum(parts.values())
        parts["overhead:device idle" if device == "cuda" else "overhead:framework"] = max(wall - covered, 0.0)
        per_step.append(parts)
        walls.append(wall)
        raw_walls.append(raw)
        events.append(step.events)
        busy.append(covered)
    keys = sorted({k for parts in per_step for k in parts})
    median = {k: statistics.median(parts.get(k, 0.0) for parts in per_step) for k in keys}
    names = CUDA_OVERHEADS if device == "cuda" else CPU_OVERHEADS
    return Profiled(
        stages={k[6:]: v for k, v in median.items() if k.startswith("stage:")},
        kinds={k[6:]: kinds.get(k[6:], "?") for k in median if k.startswith("stage:")},
        overheads={name: median.get(f"overhead:{name}", 0.0) for name in names},
        wall_s=statistics.median(walls), raw_wall_s=statistics.median(raw_walls),
        events=statistics.median(events), steps=len(timed), method=method,
        device_busy_s=statistics.median(busy) if device == "cuda" else None,
    )


def figures(profiled: Profiled, cost: Cost, mode: str, peak_flops: float, peak_bandwidth: float,
            cost_per_event: float) -> Attribution:
    """The profiled parts joined to the cost model: per stage its FLOPs and bytes, what it achieved,
    and how close that is to the roofline at its own intensity; and the bottleneck stage."""
    layers = {lc.name: lc for lc in cost.layers}
    total = profiled.total_s
    step_flops = cost.flops(mode)
    stages = []
    for name, seconds in profiled.stages.items():
        lc = layers.get(name)  # containers and "(module)" have no layer of their own
        flops = lc.step_flops(mode) if lc else 0
        nbytes = lc.step_bytes(cost.element_size, mode) if lc else 0
        flop_s = flops / seconds if flops and seconds > 0 else None
        byte_s = nbytes / seconds if nbytes and seconds > 0 else None
        share_of_ceiling: float | None
        if flop_s is not None:
            ceiling = min(peak_flops, flops / nbytes * peak_bandwidth) if nbytes else peak_flops
            share_of_ceiling = flop_s / ceiling
        else:
            share_of_ceiling = byte_s / peak_bandwidth if byte_s is not None else None
        stages.append(StageFigures(name=name, kind=profiled.kinds.get(name, "?"), seconds=seconds,
                                   share=seconds / total if total > 0 else 0.0, flops=flops, bytes=nbytes,
                                   flop_s=flop_s, byte_s=byte_s, ceiling_share=share_of_ceiling))
    return Attribution(method=profiled.method, steps=profiled.steps, events=profiled.events,
                       event_cost_s=cost_per_event, wall_s=profiled.wall_s, total_s=total, stages=stages,
                       overheads=profiled.overheads, bottleneck=bottleneck(stages, step_flops),
                       device_busy_s=profiled.device_busy_s, profile_s=profiled.profile_s)


def attribute(case: Case, work: Workload, peaks: Peaks, cost_per_event: float) -> Attribution:
    """A built case, its timing done: profiled, split into stages and joined to the cost model under
    the machine's measured ceilings. What `sepbench run` records per case and `sepbench explain` shows."""
    profiled = profile_case(work.step, work.module, synchronizer(case.device), case.device, cost_per_event)
    return figures(profiled, case_cost(case), case.mode, peaks.ceiling(case.ceiling)[1], peaks.bandwidth,
                   cost_per_event)


def bottleneck(stages: list[StageFigures], step_flops: int) -> str | None:
    """The stage whose share of the step's time most exceeds its share of the step's FLOPs: a
    depthwise conv at 60 % of the time for 5 % of the FLOPs, or a BatchNorm at 20 % for none. Where
    no stage exceeds its share (a single conv), the stage with the most time."""
    if not stages or step_flops <= 0:
        return None
    best = max(stages, key=lambda s: s.share - s.flops / step_flops)
    if best.share - best.flops / step_flops <= 0:  # one stage, or the overheads took the slack: the largest
        best = max(stages, key=lambda s: s.share)
    return best.name

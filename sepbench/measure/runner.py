"""A grid run: spec → build → theory → measure → record, one group of variants at a time.

The variants of a group (one geometry) and their baseline are timed interleaved in this process,
so each realized speedup comes from paired rounds. After the group's timing, each case is profiled
on the same built workload (`attribution`: where its step's time goes), unless `profile=False`.
Each finished case is appended to the results file at once; an interrupted run keeps every
finished case and `resume=True` measures only the rest.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil
import torch

from sepbench import theory
from sepbench.budget import Budget
from sepbench.case import Case, tensor_elements
from sepbench.errors import SepbenchError
from sepbench.grid import Grid, group_cases
from sepbench.measure import attribution, machine, memory, sitting
from sepbench.measure.environment import fingerprint
from sepbench.measure.peaks import Peaks, measure_peaks
from sepbench.measure.timer import (
    RoundLog,
    Timing,
    check_threads,
    cores_for,
    diagnose,
    intra_op_threads,
    measure_sittings,
    pinned,
)
from sepbench.measure.workload import Workload, backend_flags, require_device
from sepbench.records import (
    CaseRecord,
    MemoryFigures,
    RealizedFigures,
    RunEnd,
    RunHeader,
    TheoryFigures,
    TimingFigures,
    now,
)
from sepbench.speedup import realized_speedup, spread
from sepbench.store import ResultsFile, ensure_writable, find_resumable, read_run


class Progress(Protocol):
    def start(self, total: int) -> None: ...  # cases left to measure
    def update(self, advance: int, label: str) -> None: ...  # cases just finished, what runs now


class _Silent:
    def start(self, total: int) -> None:
        pass

    def update(self, advance: int, label: str) -> None:
        pass


@dataclass
class RunOutcome:
    path: Path
    records: list[CaseRecord] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    already_done: int = 0
    total: int = 0


@dataclass
class Plan:
    """What a run will measure, known before anything is timed."""

    groups: list[list[Case]]
    dropped: Counter[str]
    devices: list[str]

    @property
    def cases(self) -> list[Case]:
        return [c for g in self.groups for c in g]


def device_memory(device: str) -> int:
    """Bytes of memory the device has: the machine's RAM for the CPU, the first GPU's for CUDA."""
    if device == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)
    return int(psutil.virtual_memory().total)


def _fits(case: Case, capacity: int) -> bool:
    """Whether the case's input, output and weights alone fit in the device's memory."""
    return sum(tensor_elements(case).values()) * theory.ELEMENT_SIZE[case.dtype] <= capacity


def plan(grid: Grid, shard_spec: tuple[int, int] | None = None) -> Plan:
    cases, dropped = grid.expand(shard_spec)
    capacity = {d: device_memory(d) for d in {c.device for c in cases}}
    too_large = {c.id: c.device for c in cases if not _fits(c, capacity[c.device])}
    for device, n in Counter(too_large.values()).items():
        where = "this GPU" if device == "cuda" else "this machine"
        dropped[f"tensors larger than {where}'s {capacity[device] / 2**30:,.1f} GiB of memory"] += n
    # A group whose baseline cannot run has nothing to be compared with: it goes as a whole.
    cases = [c for c in cases if c.id not in too_large and c.baseline().id not in too_large]
    groups = group_cases(cases)
    devices = sorted({c.device for g in groups for c in g})
    return Plan(groups, dropped, devices)


def theory_figures(case: Case, peaks: Peaks) -> TheoryFigures:
    cost, base = theory.case_cost(case), theory.case_cost(case.baseline())
    cmp = theory.compare(case)

    def bound(c: Case, k: theory.Cost) -> float:
        return theory.roofline_bound(k.flops(c.mode), k.bytes(c.mode), peaks.ceiling(c.ceiling)[1], peaks.bandwidth)

    mine_s, base_s = bound(case, cost), bound(case.baseline(), base)
    return TheoryFigures(
        out_shape=list(cost.out_shape), params=cost.params, params_no_bias=cost.params_no_bias, macs=cost.macs,
        flops_2mac=cost.flops_2mac, flops_exact=cost.flops_exact, flops_step=cost.flops(case.mode),
        bytes_step=cost.bytes(case.mode), intensity=cost.intensity(case.mode), weight_bytes=cost.weight_bytes,
        input_bytes=cost.input_bytes, activation_bytes=cost.activation_bytes(case.mode),
        memory_bytes=cost.memory_bytes(case.mode), speedup=cmp.speedup, param_ratio=cmp.param_ratio,
        memory_ratio=cmp.memory_ratio, roofline_s=mine_s, roofline_speedup=base_s / mine_s,
        ceiling=peaks.ceiling(case.ceiling)[0],
    )


def _timing_figures(t: Timing, threads: int, threshold: float) -> TimingFigures:
    q1, med, q3 = t.quantiles
    log = t.log or RoundLog()
    return TimingFigures(median_s=med, q1_s=q1, q3_s=q3, times_s=t.times, number=t.number,
                         warmup_calls=t.warmup_calls, threads=threads,
                         remeasured=False,  # a group is no longer re-measured whole: blocks are re-taken
                         unstable=t.relative_iqr > threshold, retaken=dict(log.retaken),
                         kept_contended=log.kept_contended, blocks=log.blocks, probe_s=log.probe_s or None,
                         stop=log.stop or None, sittings=t.sittings)


def default_threads(devices: list[str]) -> tuple[int, str]:
    """The intra-op thread count when none is asked for, and why: one pinned thread on a CPU, since two
    threads on two vCPUs beside any other work wait at every barrier for the preempted one; torch's own
    count on CUDA, where the host thread only launches kernels."""
    if "cuda" in devices:
        return torch.get_num_threads(), "torch default (CUDA: the host thread launches)"
    return 1, "1 pinned thread (default: immune to other work on the other cores)"


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in text
            or "can't allocate memory" in text)


def _measure_memory(case: Case, work: Workload, threads: int) -> MemoryFigures:
    try:
        return memory.cuda_peak(work.step) if case.device == "cuda" else memory.cpu_peak(case, threads)
    except (memory.ProbeFailed, RuntimeError, MemoryError) as exc:
        return MemoryFigures(error=str(exc).splitlines()[0][:300])


class Runner:
    def __init__(self, grid: Grid, out_dir: Path, *, resume: bool = False,
                 shard_spec: tuple[int, int] | None = None, progress: Progress | None = None,
                 profile: bool = True) -> None:
        self.grid, self.out_dir, self.resume, self.shard_spec = grid, Path(out_dir), resume, shard_spec
        self.profile = profile
        self.event_cost: float | None = None  # the CPU profiler's cost per event, measured on first use
        self.settings = grid.measure
        self.plan = plan(grid, shard_spec)
        if self.settings.threads:
            self.threads, self.thread_policy = self.settings.threads, f"{self.settings.threads} asked for"
        else:
            self.threads, self.thread_policy = default_threads(self.plan.devices)
        check_threads(self.threads)
        self.progress: Progress = progress or _Silent()
        self.machine_start: dict[str, float] | None = None
        for device in self.plan.devices:
            require_device(device)
        self.run_id = ""
        self.peaks: dict[str, Peaks] = {}
        self.outcome: RunOutcome | None = None  # filled as cases finish; complete when run() returns

    def check_machine(self) -> str | None:
        """How busy the machine is before anything is measured; the line to print first when it is busy."""
        self.machine_start = machine.load()
        return machine.busy_line(self.machine_start, self.threads, len(os.sched_getaffinity(0)))

    def open(self, say: Callable[[str], None] | None = None) -> tuple[ResultsFile, set[str]]:
        """The results file to append to and the case ids already in it. Everything that can refuse the
        input speaks first; then `say` gets the busy-machine line (if any) and what is measured next."""
        ensure_writable(self.out_dir)
        if not self.plan.groups and self.shard_spec is None:
            raise SepbenchError("the grid holds no valid case to measure" + (
                f" ({sum(self.plan.dropped.values())} invalid combinations dropped)" if self.plan.dropped else ""))
        devices = self.plan.devices or list(self.grid.spec.grid.device)  # an empty shard: the grid's device
        device = "cuda" if "cuda" in devices else "cpu"
        env = fingerprint(device, self.threads)
        env["pinned_cores"] = cores_for(self.threads)
        shard_text = "{}/{}".format(*self.shard_spec) if self.shard_spec else None
        if self.resume:
            prior = find_resumable(self.out_dir, self.grid.digest(), shard_text, env)
            if prior is None or prior.header is None:
                raise SepbenchError(f"nothing to resume in {self.out_dir}: no run of grid {self.grid.name!r} "
                                    "on this machine, device and torch; start one without --resume")
            if not os.access(prior.path, os.W_OK):
                raise SepbenchError(f"cannot resume {prior.path}: the file is not writable")
            results = ResultsFile(prior.path)
            results.lock()  # a second resume of the same run stops here
            results.repair_tail()
            self._announce(say, None)
            self.run_id = prior.header.run_id
            self.peaks = {d: Peaks(**p) for d, p in prior.header.peaks.items()}
            return results, {r.case_id for r in read_run(prior.path).records}  # as of holding the lock
        self._announce(say, "measuring this machine's peaks (the roofline's ceilings)…")
        self.peaks = {d: measure_peaks(d, self.threads) for d in self.plan.devices}
        self.run_id = uuid.uuid4().hex[:12]
        header = RunHeader(
            run_id=self.run_id, grid_name=self.grid.name, grid_digest=self.grid.digest(),
            grid=self.grid.spec.model_dump(mode="json"), shard=shard_text, started=now(), environment=env,
            peaks={d: p.as_dict() for d, p in self.peaks.items()},
            machine_start=self.machine_start if self.machine_start is not None else machine.load(),
            thread_policy=self.thread_policy,
        )
        return ResultsFile.create(self.out_dir, header), set()

    def _announce(self, say: Callable[[str], None] | None, next_step: str | None) -> None:
        busy = self.check_machine()
        if say is not None:
            for line in (f"sepbench: {busy}" if busy else None, next_step):
                if line:
                    say(line)

    def run(self, opened: tuple[ResultsFile, set[str]] | None = None) -> RunOutcome:
        """Measure every case not yet in the results file; `opened` is what `open()` returned."""
        results, done = opened or self.open()
        outcome = self.outcome = RunOutcome(results.path, dropped=self.plan.dropped, already_done=len(done),
                                            total=len(self.plan.cases))
        left = sum(c.id not in done for c in self.plan.cases)
        self.progress.start(left)
        # The budget of the cases left, as `ab` spreads it: each group gets its cases' share of what is
        # left, less what the memory probes and profiles of a case have cost so far, less 3 % (as in `ab`):
        # a group always completes its first rounds, and its probes and profile come after its share.
        budget = Budget(0.97 * self.settings.budget_for(len(self.plan.cases)) * left / max(len(self.plan.cases), 1))
        self.logs: list[RoundLog] = []
        overhead, finished = 0.0, 0
        try:
            with pinned(cores_for(self.threads)), intra_op_threads(self.threads):
                for group in self.plan.groups:
                    todo = [c for c in group if c.id not in done]
                    if not todo:
                        continue
                    share = budget.allowance(left) * len(todo)
                    allowance = max(share - overhead / max(finished, 1) * len(todo), 0.0)
                    for record in self._measure_group(group[0].baseline(), todo, allowance):
                        results.append(record)  # at once: a kill loses at most the case in flight
                        outcome.records.append(record)
                        self.progress.update(1, record.case.geometry())
                    left -= len(todo)
                    finished += len(todo)
                    overhead += self._group_overhead
                results.append(self._end(budget))
        except Exception:
            if not done:
                results.discard_if_empty()  # a failed run leaves no header-only file behind
            raise
        finally:
            results.unlock()
        return outcome

    def _skipped(self, case: Case, reason: str) -> CaseRecord:
        return CaseRecord(run_id=self.run_id, case_id=case.id, group_id=case.group_id, case=case, status="skipped",
                          reason=reason, theory=theory_figures(case, self.peaks[case.device]), finished=now())

    def _end(self, budget: Budget) -> RunEnd:
        blocks = sum(g.blocks for g in self.logs)
        probes = [p for g in self.logs for p in g.probe_s]
        retaken = sum(g.retaken_total for g in self.logs)
        return RunEnd(run_id=self.run_id, finished=now(), seconds=time.monotonic() - budget.started,
                      machine_end=machine.load(), retaken_share=retaken / max(blocks, 1),
                      probe_drift=machine.probe_drift(probes))

    def _measure_group(self, base: Case, todo: list[Case], allowance: float | None = None) -> Iterator[CaseRecord]:
        self._group_overhead = 0.0
        self.progress.update(0, todo[0].geometry())
        members = [base, *[c for c in todo if c.id != base.id]]
        works: dict[str, Workload] = {}
        skipped: dict[str, str] = {}
        with backend_flags(base):
            for case in members:
                try:
                    works[case.id] = Workload(case)
                except (RuntimeError, MemoryError) as exc:
                    if not _is_oom(exc):
                        raise
                    skipped[case.id] = "out of memory while building"
                    if case.device == "cuda":
                        torch.cuda.empty_cache()
            # The first sitting times the workloads just built; each later one builds them anew in `works`,
            # which ends holding the last sitting's, for the memory probe and the profile.
            sit = sitting.in_process([c for c in members if c.id in works], self.threads, self.settings.block_time,
                                     self.settings.warmup_time, works)
            try:
                timings = {} if not works else measure_sittings(
                    sit, baseline=base.id, target=self.settings.target, allowance=allowance,
                    sitting_rounds=self.settings.sitting_rounds, min_sittings=self.settings.min_sittings,
                    max_rounds=self.settings.max_rounds)
            except (RuntimeError, MemoryError) as exc:
                if not _is_oom(exc):
                    raise
                works.clear()
                if base.device == "cuda":
                    torch.cuda.empty_cache()
                timings, skipped = {}, dict.fromkeys([c.id for c in todo], "out of memory while timing")
            timed = time.monotonic()
            log = next((t.log for t in timings.values() if t.log is not None), None)
            if log is not None:
                self.logs.append(log)
            for case in todo:
                if case.id in skipped:
                    yield self._skipped(case, skipped[case.id])
                else:
                    yield self._record(case, base, works[case.id], timings)
            self._group_overhead = time.monotonic() - timed

    def _record(self, case: Case, base: Case, work: Workload, timings: dict[str, Timing]) -> CaseRecord:
        t = timings[case.id]
        tf = theory_figures(case, self.peaks[case.device])
        realized = None
        if case.id != base.id and base.id in timings:
            base_times = timings[base.id].times
            s = realized_speedup(base_times, t.times, t.sittings)
            half = (s.high - s.low) / 2 / s.ratio if s.low is not None and s.high is not None else None
            unstable = half is None or half > self.settings.target
            realized = RealizedFigures(speedup=s.ratio, low=s.low, high=s.high, efficiency=s.ratio / tf.speedup,
                                       spread=spread(base_times, t.times), unstable=unstable, half_width=half,
                                       reason=diagnose(base_times, t.times, t.log) if unstable else None)
        mem = _measure_memory(case, work, self.threads) if self.settings.memory else None
        found, error = self._attribute(case, work) if self.profile else (None, None)
        return CaseRecord(
            run_id=self.run_id, case_id=case.id, group_id=case.group_id, case=case, status="ok",
            backend=work.conv_backends(), theory=tf,
            timing=_timing_figures(t, self.threads, self.settings.unstable_threshold), realized=realized,
            memory=mem, attribution=found, attribution_error=error, finished=now(),
        )

    def _attribute(self, case: Case, work: Workload) -> tuple[attribution.Attribution | None, str | None]:
        """Profile a few steps of the case (its timing is done) and split them into stages."""
        if self.event_cost is None:
            self.event_cost = attribution.event_cost()
        try:
            return attribution.attribute(case, work, self.peaks[case.device], self.event_cost), None
        except (RuntimeError, ValueError) as exc:
            return None, (str(exc).splitlines() or [type(exc).__name__])[0][:300]

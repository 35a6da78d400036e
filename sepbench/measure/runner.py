"""A grid run: spec → build → theory → measure → record, in passes over the grid.

The variants of a group (one geometry) and their baseline are timed interleaved in this process,
so each realized speedup comes from paired rounds; the rounds come in sittings, each on freshly
built tensors, and the interval is over sittings. A group's sittings are spread over the whole run,
one per pass over the grid: a ratio moves with the machine's state (a faster spell helps a
compute-bound conv more than a memory-bound one), so sittings taken back to back share one state
and an interval over them claims more than a second run would confirm. After a group's first
sitting, each case's peak memory is probed and its step profiled on the built workload
(`attribution`), unless turned off. A group is recorded once its interval reaches the target
(after `min_sittings`), or the budget is spent. Every sitting is journaled (`store.SittingJournal`)
and every record appended at once: an interrupted run loses at most the sitting in flight, and
`resume=True` goes on from there.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import psutil
import torch

from sepbench import theory
from sepbench.budget import Budget
from sepbench.case import Case, tensor_elements
from sepbench.errors import SepbenchError
from sepbench.grid import Grid, group_cases
from sepbench.measure import attribution, between, compiled, machine, memory, sitting
from sepbench.measure.environment import fingerprint
from sepbench.measure.peaks import Peaks, measure_peaks
from sepbench.measure.timer import (
    RoundLog,
    SittingTally,
    Timing,
    check_threads,
    cores_for,
    diagnose,
    intra_op_threads,
    pinned,
)
from sepbench.measure.workload import Workload, backend_flags, require_device
from sepbench.records import (
    CaseRecord,
    CompileFigures,
    MemoryFigures,
    RealizedFigures,
    RunEnd,
    RunHeader,
    SittingRecord,
    TheoryFigures,
    TimingFigures,
    VersusEager,
    now,
)
from sepbench.speedup import ESTIMATOR, realized_speedup, spread
from sepbench.store import ResultsFile, SittingJournal, ensure_writable, read_run, reopen, resumable


class Progress(Protocol):
    def start(self, total: int) -> None: ...  # sittings the run will take at least
    def grow(self, more: int) -> None: ...  # a group goes on past its first sittings
    def update(self, advance: int, label: str) -> None: ...  # sittings just taken, what runs now


class _Silent:
    def start(self, total: int) -> None:
        pass

    def grow(self, more: int) -> None:
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
class _Extras:
    """What a case gets measured once, after its group's first sitting in this process: the backend
    torch chose, peak memory, and where the step's time goes."""

    backend: str
    memory: MemoryFigures | None
    attribution: attribution.Attribution | None
    attribution_error: str | None


@dataclass
class _Group:
    """A group under way: its cases, those that built, and its sittings so far."""

    base: Case
    todo: list[Case]  # the cases to record
    members: list[Case]  # the baseline and the cases to record that built; all of them until the first build
    tally: SittingTally = field(default_factory=SittingTally)
    extras: dict[str, _Extras] | None = None
    compiled: dict[str, CompileFigures] = field(default_factory=dict)  # case id → its compilation, first build
    last_s: float = 0.0  # the last sitting's wall time, building included: what one more would cost
    built: bool = False  # members settled by a first build (here, or in the journal before a resume)

    @property
    def id(self) -> str:
        return self.base.group_id

    @property
    def baselines(self) -> dict[str, str]:
        """Each member's baseline: a compiled variant is compared with the compiled baseline."""
        return {c.id: c.baseline().id for c in self.members}


@dataclass
class OpenRun:
    """A run once opened (`Runner.open`): the file it appends to, the cases already in it, its id and the
    machine's peaks; what it has measured so far (`outcome`) and the round logs and extras' cost as it goes."""

    results: ResultsFile
    done: set[str]
    run_id: str
    peaks: dict[str, Peaks]
    outcome: RunOutcome
    between_run: between.Between  # the between-run component every interval holds
    logs: list[RoundLog] = field(default_factory=list)
    extras_s: list[float] = field(default_factory=lambda: [0.0, 0])  # seconds spent on extras, cases served


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
    groups = group_cases(cases, timed=True)
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


def _timing_figures(t: Timing, threads: int, threshold: float, compiled_group: bool) -> TimingFigures:
    q1, med, q3 = t.quantiles
    log = t.log or RoundLog()
    return TimingFigures(median_s=med, q1_s=q1, q3_s=q3, times_s=t.times, number=t.number,
                         warmup_calls=t.warmup_calls, threads=threads,
                         remeasured=False,  # a group is no longer re-measured whole: blocks are re-taken
                         unstable=t.relative_iqr > threshold, retaken=dict(log.retaken),
                         kept_contended=log.kept_contended, blocks=log.blocks, probe_s=log.probe_s or None,
                         stop=log.stop or None, sittings=t.sittings,
                         recompiled=log.recompiled if compiled_group else None)


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
                 profile: bool = True, compile_cache: Path | None = None) -> None:
        self.grid, self.out_dir, self.resume, self.shard_spec = grid, Path(out_dir), resume, shard_spec
        self.profile = profile
        self.event_cost: float | None = None  # the CPU profiler's cost per event, measured on first use
        self.settings = grid.measure
        self.plan = plan(grid, shard_spec)
        # Inductor's cache for compiled cases, the run's own: a second run into the same folder compiles
        # from it (cached), a first one cold; never the user's default cache by surprise.
        self.compiles = any(c.compiled for c in self.plan.cases)
        self.compile_cache = Path(compile_cache) if compile_cache else self.out_dir / ".compile-cache"
        if self.settings.threads:
            self.threads, self.thread_policy = self.settings.threads, f"{self.settings.threads} asked for"
        else:
            self.threads, self.thread_policy = default_threads(self.plan.devices)
        check_threads(self.threads)
        self.progress: Progress = progress or _Silent()
        self.machine_start: dict[str, float] | None = None
        for device in self.plan.devices:
            require_device(device)

    def check_machine(self) -> str | None:
        """How busy the machine is before anything is measured; the line to print first when it is busy."""
        self.machine_start = machine.load()
        return machine.busy_line(self.machine_start, self.threads, len(os.sched_getaffinity(0)))

    def open(self, say: Callable[[str], None] | None = None) -> OpenRun:
        """The run opened: its results file to append to (new, or the one to resume), the case ids already in
        it, its id and this machine's peaks. Everything that can refuse the input speaks first; then `say`
        gets the busy-machine line (if any) and what is measured next."""
        ensure_writable(self.out_dir)
        if not self.plan.groups and self.shard_spec is None:
            raise SepbenchError("the grid holds no valid case to measure" + (
                f" ({sum(self.plan.dropped.values())} invalid combinations dropped)" if self.plan.dropped else ""))
        devices = self.plan.devices or list(self.grid.spec.grid.device)  # an empty shard: the grid's device
        device = "cuda" if "cuda" in devices else "cpu"
        env = fingerprint(device, self.threads)
        env["pinned_cores"] = cores_for(self.threads)
        if self.compiles:
            env["inductor"] = compiled.settings()
        shard_text = "{}/{}".format(*self.shard_spec) if self.shard_spec else None
        if self.resume:
            found = resumable(self.out_dir, "run", lambda h: h.grid_digest == self.grid.digest()
                              and h.shard == shard_text
                              and all(h.environment.get(k) == env.get(k) for k in ("machine", "device", "torch")))
            if found is None:
                raise SepbenchError(f"nothing to resume in {self.out_dir}: no run of grid {self.grid.name!r} "
                                    "on this machine, device and torch; start one without --resume")
            results = reopen(found)
            prior = read_run(found)
            assert prior.header is not None  # `resumable` took it for its header
            self._announce(say, None)
            peaks = {d: Peaks(**p) for d, p in prior.header.peaks.items()}
            done = {r.case_id for r in read_run(prior.path).records}  # as of holding the lock
            b = prior.header.between_run
            tau = between.Between(b["tau"], b["source"], b.get("pairs", 0)) if b else between.Between(0.0, "none")
            return self._opened(results, done, prior.header.run_id, peaks, tau)
        self._announce(say, "measuring this machine's peaks (the roofline's ceilings)…")
        peaks = {d: measure_peaks(d, self.threads) for d in self.plan.devices}
        tau = between.for_run(self.out_dir, self.grid.digest(),
                              {k: env.get(k) for k in ("host", "torch", "device", "threads")})
        run_id = uuid.uuid4().hex[:12]
        header = RunHeader(
            run_id=run_id, grid_name=self.grid.name, grid_digest=self.grid.digest(),
            grid=self.grid.spec.model_dump(mode="json"), shard=shard_text, started=now(), environment=env,
            peaks={d: p.as_dict() for d, p in peaks.items()},
            machine_start=self.machine_start if self.machine_start is not None else machine.load(),
            thread_policy=self.thread_policy,
            compile_cache={"folder": str(self.compile_cache), "state": compiled.cache_state(self.compile_cache)}
            if self.compiles else None,
            between_run=tau.as_dict(),
        )
        return self._opened(ResultsFile.create(self.out_dir, header), set(), run_id, peaks, tau)

    def _opened(self, results: ResultsFile, done: set[str], run_id: str, peaks: dict[str, Peaks],
                tau: between.Between) -> OpenRun:
        outcome = RunOutcome(results.path, dropped=self.plan.dropped, already_done=len(done),
                             total=len(self.plan.cases))
        return OpenRun(results, done, run_id, peaks, outcome, tau)

    def _announce(self, say: Callable[[str], None] | None, next_step: str | None) -> None:
        busy = self.check_machine()
        cache = None
        if self.compiles:
            state = compiled.cache_state(self.compile_cache)
            cache = (f"compiled cases: inductor's cache in {self.compile_cache} ("
                     + ("empty: first compilations are cold)" if state == "empty" else "warm: compiled from it)"))
        if say is not None:
            for line in (f"sepbench: {busy}" if busy else None, cache, next_step):
                if line:
                    say(line)

    def run(self, opened: OpenRun | None = None) -> RunOutcome:
        """Measure every case not yet in the results file; `opened` is what `open()` returned."""
        o = opened or self.open()
        results, done, outcome = o.results, o.done, o.outcome
        journal = SittingJournal(results.path)
        groups = []
        for group in self.plan.groups:
            todo = [c for c in group if c.id not in done]
            if todo:
                bases = list(dict.fromkeys(c.baseline() for c in group))  # eager first (`group_cases`)
                members = list(dict.fromkeys([*bases, *todo]))
                groups.append(_Group(bases[0], todo, members))
        self._restore(groups, journal.read(o.run_id))
        left = sum(len(g.todo) for g in groups)
        # The cases left get their share of the run's budget, less 3 % (as in `ab`): every group completes
        # its first sittings; past them, groups still short of the target take turns while it lasts.
        budget = Budget(0.97 * self.settings.budget_for(len(self.plan.cases)) * left / max(len(self.plan.cases), 1))
        first = self.settings.min_sittings
        self.progress.start(sum(max(first - len(g.tally.sittings), 1) for g in groups))
        pending = groups
        cache = compiled.cache_in(self.compile_cache) if self.compiles else nullcontext()
        try:
            with pinned(cores_for(self.threads)), intra_op_threads(self.threads), cache:
                while pending:
                    for g in list(pending):
                        stop = self._stop(o, g, budget, pending)
                        if stop is None:
                            if len(g.tally.sittings) >= first:
                                self.progress.grow(1)
                            stop = self._sitting(o, g, journal)
                            stop = stop or self._stop(o, g, budget, pending)
                        if stop is not None:
                            pending.remove(g)
                            self._finish(o, g, stop)
                results.append(self._end(o, budget))
            journal.remove()
        except Exception:
            if not done and results.discard_if_empty():  # a failed run leaves no header-only file behind
                journal.remove()
            raise
        finally:
            results.unlock()
        return outcome

    def _restore(self, groups: list[_Group], sittings: list[SittingRecord]) -> None:
        """Count in the sittings an interrupted run journaled, for the groups still to record."""
        by_id = {g.id: g for g in groups}
        for s in sittings:
            g = by_id.get(s.group_id)
            if g is None:
                continue
            ids = set(s.times_s)
            if not g.built:
                g.members = [c for c in g.members if c.id in ids]
                g.built = True
            if {c.id for c in g.members} - ids:
                continue  # not the variants this group times: ignored, its sitting is taken again
            log = RoundLog(probe_s=list(s.probe_s), retaken=Counter(s.retaken), kept_contended=s.kept_contended,
                           blocks=s.blocks, seconds=s.seconds, recompiled=s.recompiled)
            g.tally.add({c.id: Timing(list(s.times_s[c.id]), s.numbers[c.id], s.warmup_calls.get(c.id, 0), log=log)
                         for c in g.members})
            g.last_s = s.seconds

    def _stop(self, o: OpenRun, g: _Group, budget: Budget, pending: list[_Group]) -> str | None:
        """Why the group takes no further sitting, or None. It always takes its first `min_sittings`, and
        one in this process to measure its extras on; then it stops at the target, at `max_rounds`, or
        when its next turn (after every other group under way) would end past the budget."""
        tally = g.tally
        if g.built and not g.members:
            return "rounds"  # nothing built: its cases are recorded as skipped
        if g.extras is None or len(tally.sittings) < self.settings.min_sittings:
            return None
        if self.settings.target is None or not set(g.baselines.values()) & set(tally.times):
            return "rounds"  # no interval to wait for
        if tally.narrow(g.baselines, self.settings.target, o.between_run.tau):
            return "target"
        if tally.rounds + self.settings.sitting_rounds > self.settings.max_rounds:
            return "rounds"
        without_extras = sum(len(p.todo) for p in pending if p.extras is None)
        reserve = o.extras_s[0] / max(o.extras_s[1], 1) * without_extras
        if budget.left() - reserve < sum(p.last_s for p in pending):
            return "budget"
        return None

    def _sitting(self, o: OpenRun, g: _Group, journal: SittingJournal) -> str | None:
        """Take one sitting of the group on fresh tensors, journal it, and measure the extras after the
        group's first sitting here. Returns a stop reason when the group cannot go on."""
        started = time.monotonic()
        n = len(g.tally.sittings)
        self.progress.update(0, f"sitting {n + 1}/{max(self.settings.min_sittings, n + 1)} · {g.todo[0].geometry()}")
        works: dict[str, Workload] = {}
        with backend_flags(g.base):
            if not g.built:
                self._first_build(o, g, works)
                if not g.members:
                    return "rounds"
            sit = sitting.in_process(g.members, self.threads, self.settings.block_time, self.settings.warmup_time,
                                     works)
            try:
                got = sit(self.settings.sitting_rounds, g.tally.numbers, g.tally.rounds)
            except (RuntimeError, MemoryError) as exc:
                if not _is_oom(exc):
                    raise
                works.clear()
                if g.base.device == "cuda":
                    torch.cuda.empty_cache()
                for case in g.todo:
                    self._write(o, self._skipped(o, case, "out of memory while timing"))
                g.todo, g.members = [], []
                return "rounds"
            g.last_s = time.monotonic() - started
            g.tally.add(got)
            log = next(iter(got.values())).log or RoundLog()
            journal.append(SittingRecord(
                run_id=o.run_id, group_id=g.id, times_s={k: t.times for k, t in got.items()},
                numbers=g.tally.numbers or {}, warmup_calls=g.tally.warmup_calls, probe_s=log.probe_s,
                retaken=dict(log.retaken), kept_contended=log.kept_contended, blocks=log.blocks, seconds=g.last_s,
                recompiled=log.recompiled))
            self.progress.update(1, g.todo[0].geometry())
            if g.extras is None:
                extras_started = time.monotonic()
                g.extras = {c.id: self._extras(o, c, works[c.id]) for c in g.todo if c.id in works}
                o.extras_s[0] += time.monotonic() - extras_started
                o.extras_s[1] += len(g.todo)
        return None

    def _first_build(self, o: OpenRun, g: _Group, works: dict[str, Workload]) -> None:
        """Build the group's members one by one, compiling the compiled ones (timed, outside every block); a
        case that does not fit, or does not compile, is recorded as skipped at once, with why."""
        failed: dict[str, str] = {}
        for case in g.members:
            try:
                works[case.id] = Workload(case)
                first = works[case.id].compile()
                if first is not None:
                    g.compiled[case.id] = CompileFigures(first_s=first.seconds, cache=first.cache)
            except Exception as exc:
                works.pop(case.id, None)
                if _is_oom(exc):
                    failed[case.id] = "out of memory while building"
                    if case.device == "cuda":
                        torch.cuda.empty_cache()
                elif case.compiled:
                    failed[case.id] = compiled.failure(exc)
                else:
                    raise
        self._cached_compilations(g, works)
        for case in g.todo:
            base = case.baseline()
            if case.id not in works:
                self._write(o, self._skipped(o, case, failed.get(case.id, "out of memory while building")))
            elif case.compiled and base.id not in works:
                works.pop(case.id)
                self._write(o, self._skipped(o, case, f"its baseline did not build: {failed.get(base.id)}"))
        g.todo = [c for c in g.todo if c.id in works]
        g.members = [c for c in g.members if c.id in works] if g.todo else []
        g.built = True

    def _cached_compilations(self, g: _Group, works: dict[str, Workload]) -> None:
        """Each compiled member compiled once more after dynamo forgot every frame: from inductor's cache,
        what a second run of a program pays. (Other groups' compiled frames are forgotten too; their next
        sitting compiles them again from the cache, in its warm-up.)"""
        done = [c for c in g.members if c.compiled and c.id in works and c.id in g.compiled]
        if not done:
            return
        compiled.forget()
        for case in done:
            again = works[case.id].compile()
            if again is not None:
                g.compiled[case.id] = g.compiled[case.id].model_copy(update={"cached_s": again.seconds})

    def _extras(self, o: OpenRun, case: Case, work: Workload) -> _Extras:
        if case.compiled:  # inductor fuses the stages a profile would split, and a memory child would compile
            return _Extras(work.conv_backends(), None, None, None)
        mem = _measure_memory(case, work, self.threads) if self.settings.memory else None
        found, error = self._attribute(o, case, work) if self.profile else (None, None)
        return _Extras(work.conv_backends(), mem, found, error)

    def _finish(self, o: OpenRun, g: _Group, stop: str) -> None:
        """Record the group's cases from all its sittings."""
        if not g.todo:
            return
        g.tally.log.stop = stop
        o.logs.append(g.tally.log)
        timings = g.tally.timings()
        for case in g.todo:
            self._write(o, self._record(o, case, (g.extras or {})[case.id], timings, g.compiled.get(case.id)))

    def _write(self, o: OpenRun, record: CaseRecord) -> None:
        o.results.append(record)  # at once: a kill loses at most the record in flight
        o.outcome.records.append(record)

    def _skipped(self, o: OpenRun, case: Case, reason: str) -> CaseRecord:
        return CaseRecord(run_id=o.run_id, case_id=case.id, group_id=case.group_id, case=case, status="skipped",
                          reason=reason, theory=theory_figures(case, o.peaks[case.device]), finished=now())

    def _end(self, o: OpenRun, budget: Budget) -> RunEnd:
        blocks = sum(g.blocks for g in o.logs)
        probes = [p for g in o.logs for p in g.probe_s]
        retaken = sum(g.retaken_total for g in o.logs)
        return RunEnd(run_id=o.run_id, finished=now(), seconds=time.monotonic() - budget.started,
                      machine_end=machine.load(), retaken_share=retaken / max(blocks, 1),
                      probe_drift=machine.probe_drift(probes))

    def _record(self, o: OpenRun, case: Case, extras: _Extras, timings: dict[str, Timing],
                compilation: CompileFigures | None = None) -> CaseRecord:
        t = timings[case.id]
        base = case.baseline()
        tf = theory_figures(case, o.peaks[case.device])
        realized = None
        if case.id != base.id and base.id in timings:
            base_times = timings[base.id].times
            tau = o.between_run.tau if t.sittings else 0.0
            s = realized_speedup(base_times, t.times, t.sittings, between=tau)
            half = (s.high - s.low) / 2 / s.ratio if s.low is not None and s.high is not None else None
            # A group that compiled a graph while its blocks were timed mixed two codes: it says so.
            recompiled = bool(t.log and t.log.recompiled)
            unstable = half is None or half > self.settings.target or recompiled
            why = "recompiled" if recompiled else diagnose(base_times, t.times, t.log, t.sittings) if unstable else None
            realized = RealizedFigures(speedup=s.ratio, low=s.low, high=s.high, efficiency=s.ratio / tf.speedup,
                                       spread=spread(base_times, t.times), unstable=unstable, half_width=half,
                                       reason=why, estimator=ESTIMATOR if t.sittings else None,
                                       between_run=tau if t.sittings else None)
        twin = replace(case, compile="eager")
        vs_eager = None
        if case.compiled and twin.id in timings:
            e = realized_speedup(timings[twin.id].times, t.times, t.sittings,
                                 between=o.between_run.tau if t.sittings else 0.0)
            vs_eager = VersusEager(ratio=e.ratio, low=e.low, high=e.high)
        return CaseRecord(
            run_id=o.run_id, case_id=case.id, group_id=case.group_id, case=case, status="ok",
            backend=extras.backend, theory=tf,
            timing=_timing_figures(t, self.threads, self.settings.unstable_threshold, self.compiles),
            realized=realized, memory=extras.memory, attribution=extras.attribution,
            attribution_error=extras.attribution_error, compilation=compilation, vs_eager=vs_eager, finished=now(),
        )

    def _attribute(self, o: OpenRun, case: Case, work: Workload) -> tuple[attribution.Attribution | None, str | None]:
        """Profile a few steps of the case (its timing is done) and split them into stages."""
        if self.event_cost is None:
            self.event_cost = attribution.event_cost()
        try:
            return attribution.attribute(case, work, o.peaks[case.device], self.event_cost), None
        except (RuntimeError, ValueError) as exc:
            return None, (str(exc).splitlines() or [type(exc).__name__])[0][:300]

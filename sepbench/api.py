"""sepbench from Python: measure a grid, compare two installs, measure a network, cost a case, read a file.

Each call does what the CLI command of the same name does (the CLI is a thin wrapper over these) and
returns a typed result (`sepbench.results`) with `to_pandas()` and a table in Jupyter. Units follow the
CLI: `target` in per cent, `budget` in minutes. Refusals are `SepbenchError` (the CLI's exit 2), faults
at run time `InternalError` (exit 3); an interrupt is `Interrupted`, which says what was saved and how
to resume.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepbench.errors import InternalError, SepbenchError
from sepbench.grid import Grid, axes_from, configured, grid_from, parse_shard
from sepbench.results import ComparisonResult, CostResult, ModelResult, RunResult, read

if TYPE_CHECKING:
    from sepbench.ab.driver import Comparison
    from sepbench.measure.runner import OpenRun, Plan, Runner
    from sepbench.records import ABCaseRecord

__all__ = ["Interrupted", "compare", "cost", "model", "plan", "read", "run"]

Say = Callable[[str], None]
Axes = Mapping[str, object] | Sequence[str] | None


class Interrupted(Exception):
    """A measurement stopped by Ctrl-C or SIGTERM, once what was measured is saved: what, where, and how to
    go on (`str()`). Not a KeyboardInterrupt, which the caller's frameworks (click, Jupyter) take over."""

    def __init__(self, message: str, path: Path | None) -> None:
        super().__init__(message)
        self.message, self.path = message, path

    def __str__(self) -> str:
        return self.message


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM read as an interrupt while measuring (in the main thread only, where a handler can be set)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(say: Say | None) -> Say:
    if say is not None:
        return say
    from sepbench.console import say as to_stderr

    return to_stderr


def _folder(out: str | Path) -> Path:
    """An output folder as given: the empty string would quietly become the working directory."""
    if isinstance(out, str) and not out.strip():
        raise SepbenchError("an output directory cannot be the empty path; give one (e.g. \".\")")
    return Path(out)


def _grid(grid: str | Path | Grid, axes: Axes, device: str | None = None, **settings: Any) -> Grid:
    """A grid from a preset name, a grid file (a `Path` or a name ending in .toml) or a `Grid`."""
    if isinstance(grid, Grid):
        return configured(grid, axes_from(axes), device, **settings)
    is_file = isinstance(grid, Path) or str(grid).endswith(".toml")
    return grid_from(None if is_file else str(grid), grid if is_file else None, axes=axes_from(axes),
                     device=device, **settings)


def _runner(grid: str | Path | Grid, axes: Axes, device: str | None, out: str | Path, resume: bool,
            shard: str | None, threads: int | None, memory: bool, profile: bool, target: float | None,
            budget: float | None) -> Runner:
    from sepbench.measure.runner import Runner

    found = _grid(grid, axes, device, threads=threads, memory=memory, target=target, budget=budget)
    return Runner(found, _folder(out), resume=resume, shard_spec=parse_shard(shard) if shard is not None else None,
                  profile=profile)


def plan(grid: str | Path | Grid = "default", *, axes: Axes = None, device: str | None = None,
         shard: str | None = None, threads: int | None = None) -> Plan:
    """What `run` would measure (its cases in timing groups, what was dropped and why), measuring nothing."""
    return _runner(grid, axes, device, "results/local", False, shard, threads, True, True, None, None).plan


def run(grid: str | Path | Grid = "default", *, axes: Axes = None, device: str | None = None,
        out: str | Path = "results/local", resume: bool = False, shard: str | None = None,
        threads: int | None = None, memory: bool = True, profile: bool = True, target: float | None = None,
        budget: float | None = None, progress: bool = True, say: Say | None = None) -> RunResult:
    """Measure a grid (a preset name, a grid file or a `Grid`): theory and measurement side by side, into one
    results file in `out`. `axes` replaces grid axes ({"c_in": [32, 64]} or ["c_in=32,64"]); `target` is the
    half-width in per cent each speedup's interval is measured to, `budget` the run's wall time in minutes."""
    from sepbench.console import SittingsBar, bar

    started = time.perf_counter()
    runner = _runner(grid, axes, device, out, resume, shard, threads, memory, profile, target, budget)
    speak = _say(say)
    if runner.plan.dropped:
        reasons = "; ".join(f"{n}× {why}" for why, n in runner.plan.dropped.most_common())
        speak(f"dropped {sum(runner.plan.dropped.values())} invalid combinations ({reasons})")
    opened = runner.open(say=speak)  # checks the folder first; the busy-machine line once the input is accepted
    shown = bar() if progress else nullcontext()
    with shown as progress_bar, _terminable():
        if progress_bar is not None:
            runner.progress = SittingsBar(progress_bar)
        try:
            outcome = runner.run(opened)
        except KeyboardInterrupt:
            if progress_bar is not None:
                progress_bar.stop()
            raise _run_interrupted(opened) from None
    from sepbench.store import read_run

    return RunResult(read_run(outcome.path), measured=len(outcome.records), already_done=outcome.already_done,
                     seconds=time.perf_counter() - started)


def _run_interrupted(opened: OpenRun) -> Interrupted:
    """What an interrupted run saved, counted from the files: the interrupt can land between a write and
    its count."""
    from sepbench.store import SittingJournal, read_run

    done = opened.outcome
    saved = len(read_run(done.path).records)
    sittings = len(SittingJournal(done.path).read(opened.run_id))
    kept = f" (and {sittings} sittings of the groups under way)" if sittings else ""
    return Interrupted(f"interrupted: {saved} finished cases are saved in {done.path}{kept}; continue with the "
                       "same command plus --resume", done.path)


def compare(*pythons: str | Path, grid: str | Path | Grid | None = None,
            axes: Axes = None, model: str | None = None, input: tuple[int, int, int, int] | None = None,
            dtype: str = "float32", mode: str = "inference", aa: bool = False, inject: float = 0.0,
            env_a: Mapping[str, str] | Sequence[str] | None = None,
            env_b: Mapping[str, str] | Sequence[str] | None = None, threads: int = 1, budget: float = 20.0,
            target: float = 1.0, block_ms: float = 40.0, workers: int = 10, control: float = 25.0,
            seed: int | None = None, fail_above: float | None = None, out: str | Path = "results/ab",
            resume: bool = False, progress: bool = True) -> ComparisonResult:
    """Compare two PyTorch installs (`pythons`: A and B, interpreters or venv folders), or one under two sets
    of environment variables, case by case: the paired ratio B / A per case with its 95 % interval, flags at
    a 5 % false discovery rate, an in-run control. `aa=True` compares the one interpreter with itself (a
    calibration; `inject` slows B by that many per cent). `model` compares a network's conv sites and the
    network instead of a grid. `fail_above` (per cent) closes the file with a gate verdict (`exit_code`)."""
    import math

    from sepbench.ab import request
    from sepbench.ab.driver import Comparison, Settings
    from sepbench.ab.network import NetworkRequest
    from sepbench.store import ensure_writable

    request.check_subject(model, grid is not None or bool(axes), input is not None)
    subject = NetworkRequest(model, input, dtype, mode) if model is not None else \
        _grid("default" if grid is None else grid, axes)
    envs = request.env_pairs("--env-a", env_a), request.env_pairs("--env-b", env_b)
    a, b = request.sides([str(p) for p in pythons], aa, inject, envs)
    ensure_writable(_folder(out))
    settings = Settings(block_time=block_ms / 1000, target=math.log1p(target / 100), threads=threads,
                        workers=workers, control_fraction=control / 100)
    comparison = Comparison(subject, a, b, Path(out), aa=aa, inject=inject / 100, budget_s=budget * 60,
                            settings=settings, seed=seed, resume=resume, env_a=envs[0], env_b=envs[1],
                            fail_above=None if fail_above is None else fail_above / 100)
    try:
        path = _measure_comparison(comparison, progress)
    finally:
        comparison.close()
    found = read(path)
    assert isinstance(found, ComparisonResult)
    return found


def _measure_comparison(comparison: Comparison, progress: bool) -> Path:
    """Open (one line on any refusal), then measure under a progress bar that counts the flags so far."""
    from sepbench.ab.stats import RunningFlags
    from sepbench.console import bar

    path = comparison.open()
    flags = RunningFlags()
    shown = bar() if progress else nullcontext()
    with shown as progress_bar, _terminable():
        task = progress_bar.add_task("measuring", total=len(comparison.targets), completed=comparison.done) \
            if progress_bar is not None else None

        def on_case(record: ABCaseRecord) -> None:
            flagged = flags.add(record)
            if progress_bar is not None and task is not None:
                progress_bar.update(task, completed=comparison.done, description=f"{flagged} flagged so far")

        try:
            comparison.run(on_case)
        except KeyboardInterrupt:
            if progress_bar is not None:
                progress_bar.stop()
            comparison.close()
            raise Interrupted(f"interrupted: {comparison.done} finished cases are saved in {path}; continue with "
                              "the same command plus --resume", path) from None
        except (SepbenchError, InternalError) as exc:
            raise type(exc)(f"{exc}; {comparison.done} finished cases are saved in {path}, "
                            "continue with --resume") from None
    return path


def model(spec: str, *, input: tuple[int, int, int, int] | None = None, dtype: str = "float32",
          device: str = "cpu", mode: str = "inference", threads: int = 1, budget: float = 10.0,
          out: str | Path = "results/local/models", resume: bool = False, compile: str = "eager",
          say: Say | None = None) -> ModelResult:
    """Measure a real network layer by layer (SPEC torchvision:NAME, timm:NAME, sepbench:NAME or
    package.module:factory; no weights downloaded): every Conv2d on its real input against its candidates,
    and the whole network with the faster ones swapped in. `budget` in minutes."""
    from sepbench.measure.timer import check_threads
    from sepbench.measure.workload import require_device
    from sepbench.model.measure import Settings
    from sepbench.model.run import run as run_model
    from sepbench.store import ensure_writable, read_model

    check_threads(threads)
    require_device(device)
    ensure_writable(_folder(out))
    settings = Settings(device=device, dtype=dtype, mode=mode, threads=threads, compile=compile)
    try:
        path = run_model(spec, Path(out), input_shape=input, s=settings, budget_s=budget * 60, resume=resume,
                         say=_say(say))
    except (_torch_oom(), MemoryError):
        raise SepbenchError(f"{spec} at {input or 'its input'} does not fit in the {device}'s memory") from None
    return ModelResult(read_model(path))


def _torch_oom() -> type[BaseException]:
    """torch's out-of-memory error (imported only when a command measures)."""
    import torch

    return getattr(torch, "OutOfMemoryError", MemoryError)


def cost(variant: str = "all", *, c_out: int | None = None, **knobs: Any) -> CostResult:
    """Exact cost of one case, or of every layer variant (`variant="all"`) at one geometry, against the
    baseline, nothing run. `knobs` are `Case` fields: c_in, size, kernel, stride, groups, dtype, mode, …"""
    from sepbench.case import VARIANTS, Case, check
    from sepbench.theory import case_cost

    if variant == "all":
        names = [v for v, spec in VARIANTS.items() if spec.family == "layer"]
    elif variant in VARIANTS:
        names = [variant]
    else:
        raise SepbenchError(f"unknown variant {variant!r}; valid: all, {', '.join(VARIANTS)}")
    knobs.setdefault("c_in", 32)
    knobs["c_out"] = knobs["c_in"] if c_out is None else c_out
    knobs.setdefault("device", "cpu")
    cases = [Case(name, **knobs) for name in names]
    for case in cases:
        check(case)
    return CostResult([(c, case_cost(c), case_cost(c.baseline())) for c in cases])

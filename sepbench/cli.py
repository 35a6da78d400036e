"""`sepbench` command line: run, ab, model, cost, list, env, show, merge, timercheck, crosscheck, report.

Bad input of any kind ends with one line on stderr and exit code 2, never a traceback. An
interrupted run (Ctrl-C, SIGTERM) keeps every finished case and says how to resume.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sepbench import __version__
from sepbench.case import ACTS, COMPILE_MODES, DTYPES, MODES, PADDINGS, VARIANTS, Case, check
from sepbench.errors import SepbenchError
from sepbench.grid import Grid, group_cases, load_grid, load_preset, parse_axis, parse_shard, preset_names

if TYPE_CHECKING:
    import pandas as pd

    from sepbench.ab.driver import Comparison

# Piped or logged output keeps the tables' full width instead of rich's 80-column fallback.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _printable(text: str) -> str:
    """The text as one printable line: what no stream can encode (a lone surrogate from a file name
    that is not UTF-8) and what would break the line (a newline in a path) written as escapes, so the
    line that explains an error neither raises one nor becomes two lines."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _fail(message: str) -> NoReturn:
    err.print(f"sepbench: error: {_printable(message)}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(EXIT_USAGE)


def _check_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from sepbench.measure.timer import check_threads

    if value is not None:
        try:
            check_threads(value)
        except SepbenchError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """A command's table as CSV, where --csv asks for it; a path that cannot be written is one line."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.to_csv(staged, index=False)
        os.replace(staged, path)  # whole or absent: a full disk leaves the old file, or none
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise SepbenchError(f"cannot write {path}: {exc.strerror}") from None


class Finite(click.FloatRange):
    """A float within a range, and finite: click's own range lets NaN through (every comparison with it
    is false)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def say_left_out(problems: list) -> None:
    """One line on stderr naming what a reader left out (damaged lines, files that are not results), so
    that no command works from less than it was given without a word; torn last lines of killed runs
    are expected and not named."""
    damaged = [p for p in problems if not getattr(p, "torn_tail", False)]
    if damaged:
        more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
        err.print(_printable(f"sepbench: left out {damaged[0]}{more}"), markup=False, highlight=False, soft_wrap=True)


THREADS = click.option("--threads", type=int, callback=_check_threads, metavar="N",
                       help="Intra-op threads, 1 to the cores available (default: 1 on a CPU, torch's on CUDA).")


class _RichProgress:
    """Progress bar with ETA over the sittings left to take (a run's unit of work)."""

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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="sepbench")
def cli() -> None:
    """How much cheaper separable, grouped and depthwise convolutions are in theory, and how much
    faster and leaner they are in practice, on this machine and this PyTorch."""


@cli.command()
@click.option("--preset", help="A named grid (see `sepbench list`). Default: default.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), help="A TOML grid file.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Override the grid's device axis.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results/local"),
              show_default=True, help="Directory for the results file (results/local/ is ignored by git: a run "
                                      "leaves a clone clean; to commit a run, give --out results).")
@click.option("--resume", is_flag=True, help="Continue the newest interrupted run of this grid in --out.")
@click.option("--shard", "shard_text", metavar="K/N", help="Measure only the K-th of N slices of the grid.")
@THREADS
@click.option("--no-memory", is_flag=True, help="Skip the per-case peak memory probes.")
@click.option("--no-profile", is_flag=True,
              help="Skip the per-case profile after timing (where the time goes, stage by stage).")
@click.option("--axis", "axes", multiple=True, metavar="KEY=V1,V2",
              help="Replace one grid axis, e.g. --axis c_in=32,64 --axis mode=train (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print what the run (or shard) would measure, and measure nothing.")
@click.option("--target", type=Finite(min=0.1, max=100), metavar="PCT",
              help="A group measures until every speedup's 95 % interval is within ±PCT % (grid default: 3).")
@click.option("--budget", type=Finite(min=0.1, max=7 * 24 * 60), metavar="MIN",
              help="Wall time for the whole run, in minutes (grid default: 2 s a case). Every group takes its "
                   "first sittings; past them, groups short of --target take turns until it is spent, and a "
                   "group that has not reached --target then is unstable.")
def run(preset: str | None, grid_file: Path | None, device: str | None, out_dir: Path, resume: bool,
        shard_text: str | None, threads: int | None, no_memory: bool, no_profile: bool, axes: tuple[str, ...],
        dry_run: bool, target: float | None, budget: float | None) -> None:
    """Measure a grid: theory and measurement side by side, one results file per run."""
    from sepbench.measure.runner import Runner
    from sepbench.store import SittingJournal, ensure_writable, load, read_run

    grid = _grid_from(preset, grid_file, axes, device, threads, no_memory, target=target, budget=budget)
    shard_spec = parse_shard(shard_text) if shard_text is not None else None
    started = time.perf_counter()
    # Everything that can refuse the input (grid, device, output directory) speaks before the bar starts.
    runner = Runner(grid, out_dir, resume=resume, shard_spec=shard_spec, profile=not no_profile)
    if runner.plan.dropped:
        reasons = "; ".join(f"{n}× {why}" for why, n in runner.plan.dropped.most_common())
        err.print(f"dropped {sum(runner.plan.dropped.values())} invalid combinations ({reasons})", markup=False,
                  soft_wrap=True)
    if dry_run:
        cases = runner.plan.cases
        shard_note = f" (shard {shard_text})" if shard_text else ""
        out.print(f"{grid.name}{shard_note}: {len(cases)} cases in {len(runner.plan.groups)} groups on "
                  f"{', '.join(runner.plan.devices) or 'no device'}", highlight=False)
        return
    ensure_writable(out_dir)
    # The busy-machine line comes once the input is accepted, before anything is measured.
    opened = runner.open(say=lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with Progress(SpinnerColumn(), TextColumn("{task.description}", style="bold"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=err, transient=False) as bar:
        runner.progress = _RichProgress(bar)
        try:
            outcome = runner.run(opened)
        except KeyboardInterrupt:
            bar.stop()
            done = runner.outcome
            where = f" in {done.path}" if done else ""
            # Counted from the files: the interrupt can land between a write and its count.
            saved = len(read_run(done.path).records) if done else 0
            sittings = len(SittingJournal(done.path).read(runner.run_id)) if done else 0
            kept = f" (and {sittings} sittings of the groups under way)" if sittings else ""
            err.print(f"interrupted: {saved} finished cases are saved{where}{kept}; continue with the same "
                      "command plus --resume", markup=False, soft_wrap=True)
            sys.exit(EXIT_INTERRUPTED)
    if not outcome.total:
        out.print(f"shard {shard_text} holds no valid case of this grid; {outcome.path} says so, and "
                  "`sepbench merge` counts it", highlight=False, soft_wrap=True)
        return
    df, _ = load([outcome.path])
    from sepbench.report.tables import compile_lines, machine_line, print_results

    print_results(df, out)
    elapsed = time.perf_counter() - started
    skipped = int((df["status"] == "skipped").sum())
    out.print(f"{len(outcome.records)} cases measured in {elapsed:.0f} s"
              + (f" ({outcome.already_done} already done before --resume)" if outcome.already_done else "")
              + (f", {skipped} skipped" if skipped else "") + f" → {outcome.path}", highlight=False)
    end = read_run(outcome.path).end
    if end is not None:
        out.print(machine_line(runner.thread_policy, runner.machine_start, end), highlight=False)
    for line in compile_lines(df):
        out.print(line, highlight=False)


def _grid_from(preset: str | None, grid_file: Path | None, axes: tuple[str, ...] = (), device: str | None = None,
               threads: int | None = None, no_memory: bool = False, *, target: float | None = None,
               budget: float | None = None, default_preset: str = "default") -> Grid:
    """The grid a command's `--preset/--grid/--axis/--device/--threads` options name, for every command
    that takes them (`run`, `merge`, `ab`, `timercheck`), with the same refusals everywhere. Its digest
    depends on all of them: what `run` measures is what `merge` expects."""
    if preset is not None and grid_file:
        raise SepbenchError("give --preset or --grid, not both")
    grid = load_grid(grid_file) if grid_file else load_preset(default_preset if preset is None else preset)
    if axes:
        grid = grid.with_axes(dict(parse_axis(a) for a in axes))
    if device:
        grid = grid.with_device(device)
    updates = {k: v for k, v in (("threads", threads), ("memory", False if no_memory else None),
                                 ("target", target / 100 if target else None),
                                 ("budget_s", budget * 60 if budget else None)) if v is not None}
    if updates:
        grid = type(grid)(grid.name, grid.spec.model_copy(update={"measure": grid.measure.model_copy(update=updates)}))
    return grid


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _case_options(f: Callable) -> Callable:
    """The knobs of one case, shared by `cost` and `explain`."""
    for option in reversed(CASE_OPTIONS):
        f = option(f)
    return f


CASE_OPTIONS = [
    click.option("--c-in", type=int, default=32, show_default=True),
    click.option("--c-out", type=int, help="Default: c_in."),
    click.option("--size", type=int, default=56, show_default=True, help="Input height = width (ρ for networks)."),
    click.option("--kernel", type=int, default=3, show_default=True),
    click.option("--stride", type=int, default=1, show_default=True),
    click.option("--dilation", type=int, default=1, show_default=True),
    click.option("--padding", type=click.Choice(PADDINGS), default="same", show_default=True),
    click.option("--groups", type=int, default=4, show_default=True, help="For grouped."),
    click.option("--expansion", type=int, default=6, show_default=True, help="For inverted_residual."),
    click.option("--alpha", type=float, default=1.0, show_default=True, help="Width multiplier, for networks."),
    click.option("--bias", is_flag=True),
    click.option("--act", type=click.Choice(ACTS), default="none", show_default=True),
    click.option("--batch", type=int, default=1, show_default=True),
    click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True),
    click.option("--mode", type=click.Choice(MODES), default="inference", show_default=True),
]


@cli.command()
@click.argument("variant", metavar="VARIANT|all")
@_case_options
@click.option("--layers", is_flag=True, help="Also print the per-layer breakdown.")
def cost(variant: str, c_out: int | None, layers: bool, **knobs: Any) -> None:
    """Exact cost of one case without running it: shapes, params, MACs, FLOPs (both conventions),
    bytes, intensity and memory, against the baseline. VARIANT `all` compares every layer variant."""
    from sepbench.report.tables import comparison_table, layers_table
    from sepbench.theory import case_cost

    knobs["c_out"] = knobs["c_in"] if c_out is None else c_out
    if variant == "all":
        names = [v for v, spec in VARIANTS.items() if spec.family == "layer"]
    elif variant in VARIANTS:
        names = [variant]
    else:
        raise SepbenchError(f"unknown variant {variant!r}; valid: all, {', '.join(VARIANTS)}")
    cases = [Case(name, device="cpu", **knobs) for name in names]
    for case in cases:
        check(case)
    rows = [(c, case_cost(c), case_cost(c.baseline())) for c in cases]
    first = cases[0]
    base = first.baseline()
    title = f"{first.geometry().split(' [')[0]} · baseline {base.label()}"
    out.print(comparison_table([(base, case_cost(base), case_cost(base)), *[r for r in rows if r[0] != base]],
                               first.mode, title))
    if layers or variant != "all":
        for case, c, _ in rows:
            out.print(layers_table(c, f"{case.label()}: per layer", stages_only=case.family == "network"))
    out.print("MACs: multiply-accumulates of conv and linear layers. FLOPs [2mac] = 2·MACs (what FlopCounterMode "
              "reports; bias ignored); FLOPs [exact] = L multiplies + L−1 adds per output of a length-L dot product, "
              "+1 per output with bias. Bytes: minimum traffic, each stage reads input and weights once and writes "
              "output once. Training step = 3 × forward FLOPs.", style="dim", markup=False)


@cli.command()
@click.argument("variant", metavar="VARIANT", required=False)
@_case_options
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@THREADS
@click.option("--results", "paths", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Results files or folders to look in (repeatable; default: results/).")
@click.option("--measure", is_flag=True, help="Measure and profile the case now, even where results have it.")
@click.option("--model", "model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A `sepbench model` results file: explain one of its layers (--layer) instead of a case.")
@click.option("--layer", help="With --model: the layer's name in the network, e.g. layer3.1.conv2.")
def explain(variant: str | None, c_out: int | None, device: str, threads: int | None, paths: tuple[Path, ...],
            measure: bool, model_file: Path | None, layer: str | None, **knobs: Any) -> None:
    """Where one case's time goes, stage by stage: from the results that have it (newest per machine,
    torch and device), or measured and profiled on the spot when none do. With --model and --layer, one
    layer of a network measured by `sepbench model`: its shapes, its candidates' theory and realized ×,
    and each candidate's time stage by stage, timed now on the layer's real input."""
    from sepbench.report.tables import attribution_table

    if model_file is not None or layer is not None:
        if model_file is None or layer is None or variant is not None:
            raise SepbenchError("explain a model's layer with --model FILE --layer NAME (and no VARIANT)")
        _explain_layer(model_file, layer, threads or 1)
        return
    if variant is None:
        raise SepbenchError("give a VARIANT (see `sepbench list`), or --model FILE --layer NAME")
    if variant not in VARIANTS:
        raise SepbenchError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    knobs["c_out"] = knobs["c_in"] if c_out is None else c_out
    case = Case(variant, device=device, **knobs)
    check(case)
    shown = 0 if measure else _explain_from_results(case, list(paths) or [Path("results")])
    if shown:
        return
    if paths and not measure:
        err.print(f"no profiled record of this case in {', '.join(map(str, paths))}: measuring it now",
                  markup=False, highlight=False, soft_wrap=True)
    from sepbench.measure.explain import measure_case

    att, timer_s, step_flops, where = measure_case(case, threads)
    out.print(attribution_table(att, step_flops, f"{case.label()} at {case.geometry()} · measured now on {where}",
                                timer_s))
    out.print(f"bottleneck: {att.bottleneck} (◀). Times are per step, profiler cost taken off; achieved against "
              "this machine's measured peaks.", style="dim", markup=False)


def _explain_layer(path: Path, layer: str, threads: int) -> None:
    """One layer of a measured network: its record, then its candidates stage by stage, timed now."""
    import difflib

    from sepbench.measure.timer import cores_for, intra_op_threads, pinned
    from sepbench.model.explain import stage_times
    from sepbench.report.tables import layer_table, stages_table
    from sepbench.store import read_model

    found = read_model(path)
    names = [name for r in found.sites for name in r.layers]
    record = next((r for r in found.sites if layer in r.layers), None)
    if found.header is None or record is None:
        close = difflib.get_close_matches(layer, names, n=4, cutoff=0.5)
        raise SepbenchError(f"{path.name} has no measured layer {layer!r}"
                            + (f"; close matches: {', '.join(close)}" if close else ""))
    out.print(layer_table(found, record, layer))
    with pinned(cores_for(threads)), intra_op_threads(threads):
        times = stage_times(found, record, threads)
    out.print(stages_table(times, f"{layer}: each stage timed alone on its real input, now"))


def _explain_from_results(case: Case, paths: list[Path]) -> int:
    """Print the case's attribution from every environment in the results that has one; how many."""
    import json

    from sepbench.records import Attribution
    from sepbench.report.tables import attribution_table
    from sepbench.store import load

    if not any(p.exists() for p in paths):
        return 0
    df, problems = load([p for p in paths if p.exists()])
    say_left_out(problems)
    if df.empty or "attribution_json" not in df:
        return 0
    rows = df[(df["case_id"] == case.id) & df["attribution_json"].notna()]
    rows = rows.sort_values("run_started").groupby(["env_machine", "env_torch", "device"], dropna=False).tail(1)
    for _, row in rows.iterrows():
        att = Attribution.model_validate(json.loads(row["attribution_json"]))
        title = f"{case.label()} at {case.geometry()} · {row['env_machine']} torch {row['env_torch']} · {row['file']}"
        out.print(attribution_table(att, int(row["theory_flops_step"]), title, row["timing_median_s"]))
    return len(rows)


@cli.command(name="list")
def list_() -> None:
    """Variants and presets."""
    from sepbench.report.tables import presets_table, variants_table

    out.print(variants_table(list(VARIANTS.values())))
    rows = []
    for name in preset_names():
        grid = load_preset(name)
        counts = []
        for device in ("cpu", "cuda"):
            cases, _ = grid.with_device(device).expand()
            counts.append(f"{len(cases)} / {len(group_cases(cases))}")
        rows.append((name, counts, grid.spec.description))
    out.print(presets_table(rows))


@cli.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@THREADS
@click.option("--no-peaks", is_flag=True, help="Skip the peak microbenchmarks.")
def env(device: str, threads: int | None, no_peaks: bool) -> None:
    """Environment fingerprint and this machine's measured peaks (the roofline's ceilings)."""

    from sepbench.measure.environment import fingerprint
    from sepbench.measure.peaks import measure_peaks
    from sepbench.measure.runner import default_threads
    from sepbench.measure.workload import require_device
    from sepbench.report.tables import environment_table

    require_device(device)
    threads = threads or default_threads([device])[0]
    out.print(environment_table(fingerprint(device, threads), None if no_peaks else measure_peaks(device, threads)))


@cli.command()
@click.option("--preset", help="Grid whose cases are checked (see `sepbench list`). Default: smoke.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), help="A TOML grid file.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Override the grid's device axis.")
@THREADS
@click.option("--limit", type=click.IntRange(min=1), help="Check only the first N cases.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write one row per case (case id, the medians in seconds, the ratios) to this CSV file.")
def timercheck(preset: str | None, grid_file: Path | None, device: str | None, threads: int | None,
               limit: int | None, csv_path: Path | None) -> None:
    """Check sepbench's timer against torch.utils.benchmark.Timer (and CUDA events on a GPU),
    case by case, alternating the methods. Agreement is the ratio of medians."""
    import pandas as pd

    from sepbench.measure.runner import default_threads
    from sepbench.measure.timer import cores_for, pinned
    from sepbench.measure.timercheck import check_case
    from sepbench.measure.workload import require_device
    from sepbench.report.tables import timercheck_summary, timercheck_table

    grid = _grid_from(preset, grid_file, device=device, default_preset="smoke")
    cases = [c for g in group_cases(grid.expand()[0]) for c in g][:limit]
    if not cases:
        raise SepbenchError(f"grid {grid.name!r} holds no valid case to check")
    for d in {c.device for c in cases}:
        require_device(d)
    threads = threads or grid.measure.threads or default_threads(sorted({c.device for c in cases}))[0]
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err) as bar:
        task = bar.add_task("timing", total=len(cases))
        for case in cases:
            with pinned(cores_for(threads)):  # where `run` measures
                a = check_case(case, threads, grid.measure)
            rows.append({"case_id": case.id, "geometry": case.geometry(), "variant": case.label(), "threads": threads,
                         "sepbench_s": a.sepbench_s, "timer_s": a.timer_s, "events_s": a.events_s,
                         "sepbench_over_timer": a.ratio_timer, "sepbench_over_events": a.ratio_events})
            bar.advance(task)
    table = pd.DataFrame(rows)
    out.print(timercheck_table(table, threads))
    out.print(timercheck_summary(table), highlight=False)
    if csv_path:
        _write_csv(table, csv_path)


def _input_shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"{value!r}: give N,C,H,W, four positive integers (e.g. 1,3,224,224)")
    n, c, h, w = (int(p) for p in parts)
    if n * c * h * w > 2**31:
        raise click.BadParameter(f"{value!r}: {n * c * h * w:,} elements is more than this command takes")
    return n, c, h, w


@cli.command()
@click.option("--python", "pythons", multiple=True, required=True, metavar="PATH",
              help="An interpreter (or venv folder) with its own torch and sepbench: give A, then B. With --aa, one.")
@click.option("--preset", help="A named grid (see `sepbench list`). Default: default.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), help="A TOML grid file.")
@click.option("--axis", "axes", multiple=True, metavar="KEY=V1,V2", help="Replace one grid axis (repeatable).")
@click.option("--threads", type=int, default=1, show_default=True, callback=_check_threads, metavar="N",
              help="Intra-op threads of each worker; both are pinned to the same N cores.")
@click.option("--budget", type=Finite(min=0.1, max=24 * 60), default=20.0, show_default=True,
              metavar="MIN", help="Wall time for the whole comparison, in minutes, spread over the cases.")
@click.option("--target", type=Finite(min=0.01, max=50), default=1.0, show_default=True, metavar="PCT",
              help="A case stops once its 95 % interval lies within ±PCT % (or its share of the budget is spent).")
@click.option("--block-ms", type=Finite(min=1, max=1000), default=40.0, show_default=True,
              help="Milliseconds per timed block.")
@click.option("--workers", type=click.IntRange(min=2, max=32), default=10, show_default=True,
              help="Worker processes per side; a pair of them is the unit the interval is taken over. More "
                   "pairs find smaller changes; a case whose share of the budget is spent stops after 6.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results/ab"),
              show_default=True, help="Directory for the comparison file.")
@click.option("--resume", is_flag=True,
              help="Finish the newest interrupted comparison of the same grid and interpreters.")
@click.option("--aa", is_flag=True, help="Calibration: one interpreter against itself, to count false positives.")
@click.option("--inject", type=Finite(min=0, max=100), default=0.0, metavar="PCT",
              help="Calibration, with --aa only: B's blocks are stretched by PCT % of their own time, to measure "
                   "what fraction of a known slowdown is found.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1),
              help="Seed of the block order (default: drawn, and recorded).")
@click.option("--env-a", "env_a", multiple=True, metavar="KEY=VALUE",
              help="An environment variable set in A's workers only (repeatable), e.g. OMP_SCHEDULE=static.")
@click.option("--env-b", "env_b", multiple=True, metavar="KEY=VALUE",
              help="An environment variable set in B's workers only (repeatable), e.g. DNNL_MAX_CPU_ISA=AVX2: "
                   "one install under two settings is then a comparison of its own.")
@click.option("--control", type=Finite(min=0, max=100), default=25.0, show_default=True, metavar="PCT",
              help="Share of the cases that also time one side's workers against each other: the in-run "
                   "control of false flags, side and order bias on this machine, now.")
@click.option("--model", "spec", metavar="SPEC",
              help="Compare a network instead of a grid: each of its conv site shapes on its real input, and the "
                   "whole network (torchvision:NAME, timm:NAME, sepbench:NAME or package.module:factory, "
                   "resolved in each interpreter).")
@click.option("--input", "input_shape", callback=_input_shape, metavar="N,C,H,W",
              help="With --model: the input (default: what the model declares, else 1,3,224,224).")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True, help="With --model.")
@click.option("--mode", type=click.Choice(MODES), default="inference", show_default=True, help="With --model.")
@click.option("--fail-above", "fail_above", type=Finite(min=0, max=1000), metavar="PCT",
              help="A gate for CI: exit 1, naming them, when cases (or sites) are slower under B by more than "
                   "PCT % at the comparison's 5 % false discovery rate; the verdict is the file's last line.")
def ab(pythons: tuple[str, ...], preset: str | None, grid_file: Path | None, axes: tuple[str, ...], threads: int,
       budget: float, target: float, block_ms: float, workers: int, out_dir: Path, resume: bool, aa: bool,
       inject: float, seed: int | None, env_a: tuple[str, ...], env_b: tuple[str, ...], control: float,
       spec: str | None, input_shape: tuple[int, int, int, int] | None, dtype: str, mode: str,
       fail_above: float | None) -> None:
    """Compare two PyTorch installs, or one under two settings, case by case: workers of both sides in pairs,
    blocks alternated in both orders, the paired ratio B / A per case with its 95 % interval, flags at a 5 %
    false discovery rate, and an in-run control of what the machine can fake. With --model, the cases are a
    network's conv sites and the network itself."""
    from sepbench.ab.driver import Comparison, Settings, interpreter
    from sepbench.ab.network import NetworkRequest
    from sepbench.store import ensure_writable

    if spec is not None and (preset is not None or grid_file is not None or axes):
        raise SepbenchError("--model compares a network: give no --preset, --grid or --axis with it")
    if spec is None and input_shape is not None:
        raise SepbenchError("--input goes with --model")
    subject = NetworkRequest(spec, input_shape, dtype, mode) if spec is not None else \
        _grid_from(preset, grid_file, axes)
    envs = _env_pairs("--env-a", env_a), _env_pairs("--env-b", env_b)
    if inject and not aa:
        raise SepbenchError("--inject is a calibration of one interpreter against itself: give it with --aa")
    if aa and (envs[0] or envs[1]):
        raise SepbenchError("--aa compares one setup with itself: give no --env-a/--env-b with it")
    if len(pythons) > 2:
        raise SepbenchError(f"--python is given {len(pythons)} times; give A and B (or one with --aa)")
    if len(pythons) == 1 and not aa and envs[0] == envs[1]:
        raise SepbenchError("give two interpreters, --python A --python B (or one with --aa, or one with "
                            "--env-a/--env-b settings that differ)")
    sides = [interpreter(p) for p in pythons]
    a, b = sides[0], sides[-1]
    if aa and a.prefix != b.prefix:
        raise SepbenchError("--aa compares one interpreter with itself; give one --python")
    if not aa and a.prefix == b.prefix and envs[0] == envs[1]:
        raise SepbenchError(f"--python {a.given} and --python {b.given} are the same install ({a.prefix}) under "
                            "the same settings; to compare it with itself, pass --aa (or set --env-a/--env-b)")
    ensure_writable(out_dir)
    settings = Settings(block_time=block_ms / 1000, target=math.log1p(target / 100), threads=threads, workers=workers,
                        control_fraction=control / 100)
    comparison = Comparison(subject, a, b, out_dir, aa=aa, inject=inject / 100, budget_s=budget * 60,
                            settings=settings, seed=seed, resume=resume, env_a=envs[0], env_b=envs[1],
                            fail_above=None if fail_above is None else fail_above / 100)
    try:
        _ab_measure(comparison)
    finally:
        comparison.close()
    if comparison.path is None:  # open() names the file before anything is measured
        raise SepbenchError("the comparison wrote no file")
    _ab_print(comparison.path)


def _ab_print(path: Path) -> None:
    """A finished comparison: its table (a network's sites by what they carry), the counts, the control,
    the network's answer and the gate's verdict, which sets the exit code."""
    from sepbench.ab.stats import comparison as read_comparison
    from sepbench.ab.stats import compile_times, network_verdict, summarize
    from sepbench.report.tables import (
        ab_table,
        compile_line,
        control_line,
        gate_line,
        network_ab_line,
        network_ab_table,
    )
    from sepbench.store import read_ab

    ab_file = read_ab(path)
    if ab_file.header is None:  # read_ab refuses a file without one
        raise SepbenchError(f"{path} has no header")
    table, ctrl = read_comparison(ab_file.records, ab_file.header.protocol)
    whole = network_verdict(table) if ab_file.header.network is not None else None
    out.print(network_ab_table(whole, ab_file.header) if whole is not None else ab_table(table, ab_file.header))
    s = summarize(table)
    out.print(f"{s['compared']} of {s['cases']} cases compared; {s['flagged']} flagged at a 5 % false discovery rate "
              f"({s['b_slower']} B slower, {s['b_faster']} B faster); median ratio B/A {s['median_ratio']:.4f}, "
              f"median half-width of the intervals {100 * s['median_mdc']:.2f} % (a change that large is found about "
              f"half the time; one of {100 * s['median_d80']:.2f} % with 80 % power) → {path}",
              highlight=False)
    out.print(control_line(ctrl, s), highlight=False)
    times = compile_times(ab_file.records)
    if times is not None:
        out.print(compile_line(times), highlight=False)
    if whole is not None:
        out.print(network_ab_line(whole, ab_file.header), highlight=False)
    if ab_file.gate is not None:
        out.print(gate_line(ab_file.gate), highlight=False)
        if ab_file.gate.exit_code:
            sys.exit(ab_file.gate.exit_code)


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_pairs(option: str, given: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE settings, each key once, in a form a process environment takes."""
    env: dict[str, str] = {}
    for text in given:
        key, sep, value = text.partition("=")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise SepbenchError(f"{option} {text!r}: give KEY=VALUE, KEY a name of letters, digits and '_'")
        if "\0" in value:
            raise SepbenchError(f"{option} {key}: a value cannot hold a NUL character")
        if key in env:
            raise SepbenchError(f"{option} {key} is given twice")
        env[key] = value
    return env


def _ab_measure(comparison: Comparison) -> None:
    """Open (one line on any refusal), then measure under a progress bar that counts the flags so far."""
    from sepbench.ab.driver import PROTOCOL
    from sepbench.ab.stats import FLAGS
    from sepbench.ab.stats import comparison as read_comparison

    comparison.open()
    done: list = []
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("measuring", total=len(comparison.targets),
                            completed=comparison.done)

        def on_case(record: object) -> None:
            done.append(record)
            table, _ = read_comparison(done, PROTOCOL)
            flagged = int(table["verdict"].isin(FLAGS).sum())
            bar.update(task, completed=comparison.done, description=f"{flagged} flagged so far")

        try:
            comparison.run(on_case)
        except KeyboardInterrupt:
            bar.stop()
            err.print(f"interrupted: {comparison.done} finished cases are saved in {comparison.path}; continue "
                      "with the same command plus --resume", markup=False, soft_wrap=True)
            comparison.close()
            sys.exit(EXIT_INTERRUPTED)
        except SepbenchError as exc:
            raise SepbenchError(f"{exc}; {comparison.done} finished cases are saved in {comparison.path}, "
                                "continue with --resume") from None


@cli.command(name="crosscheck")
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path), required=True,
              help="A comparison folder from `nox -s crosscheck` (sepbench runs, asv/, pytest-benchmark/), or "
                   "sepbench results files (repeatable).")
@click.option("--asv", "asv_dir", type=click.Path(file_okay=False, path_type=Path),
              help="asv results, one file per pass. Default: asv/ in the first --results folder.")
@click.option("--pytest-benchmark", "pb_dir", type=click.Path(file_okay=False, path_type=Path),
              help="pytest-benchmark saves, one per pass. Default: pytest-benchmark/ in the first --results folder.")
@click.option("--tolerance", type=Finite(min=0, min_open=True, max=10), default=0.10, show_default=True,
              help="Allowed relative difference (above 0).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table (medians in seconds, ratios) to this CSV file.")
def crosscheck_(results: tuple[Path, ...], asv_dir: Path | None, pb_dir: Path | None, tolerance: float,
                csv_path: Path | None) -> None:
    """Do `sepbench run`, asv and pytest-benchmark agree on the same cases? Pass k of each harness is
    held against sepbench's pass k; the agreement is the median of those ratios over the passes.
    Exit 1 if any lies outside 1 ± tolerance."""
    from sepbench.crosscheck import crosscheck
    from sepbench.report.tables import crosscheck_table

    folder = results[0] if results[0].is_dir() else results[0].parent
    asv_dir, pb_dir = asv_dir or folder / "asv", pb_dir or folder / "pytest-benchmark"
    for name, path in (("asv", asv_dir), ("pytest-benchmark", pb_dir)):
        if not path.is_dir():
            raise SepbenchError(f"no {name} results folder at {path}")
    left_out: list = []
    table = crosscheck(list(results), asv_dir, pb_dir, left_out)
    say_left_out(left_out)
    if csv_path:
        _write_csv(table, csv_path)
    view = crosscheck_table(table)
    out.print(view)
    ratios = table[["asv / sepbench", "pytest-benchmark / sepbench"]]
    outside = int(((ratios - 1).abs() > tolerance).to_numpy().sum())
    out.print(f"{len(table)} cases; ratios {ratios.min().min():.3f}–{ratios.max().max():.3f}; "
              f"{outside} outside ±{tolerance:.0%}", highlight=False)
    if outside:
        sys.exit(1)


@cli.command()
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
def show(results: tuple[Path, ...]) -> None:
    """Merge results files (or directories of them) and print the table. Damaged lines are named
    with path:line; everything else still shows, and the exit code is then 2."""
    from sepbench.report.tables import print_results
    from sepbench.store import load

    df, problems = load(list(results) or [Path("results")])
    if len(df):
        print_results(df, out)
    torn = [p for p in problems if p.torn_tail]
    for p in torn:
        err.print(f"sepbench: note: {p}", markup=False, highlight=False, soft_wrap=True)
    damaged = [p for p in problems if not p.torn_tail]
    if damaged:
        more = f" (and {len(damaged) - 1} more damaged lines)" if len(damaged) > 1 else ""
        _fail(f"damaged results: {damaged[0]}{more}")
    if not len(df):
        _fail(f"no results found in {', '.join(map(str, results or ['results']))}")


@cli.command()
@click.argument("spec", metavar="SPEC")
@click.option("--input", "input_shape", callback=_input_shape, metavar="N,C,H,W",
              help="The input (default: what the model declares, else 1,3,224,224).")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="inference", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, callback=_check_threads, metavar="N",
              help="Intra-op threads, pinned to that many cores.")
@click.option("--budget", type=Finite(min=0.1, max=24 * 60), default=10.0, show_default=True, metavar="MIN",
              help="Wall time for the whole network in minutes, spread over its site shapes by their share of "
                   "its conv time; a fifth is kept for timing the whole network with the swaps.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results/local/models"), show_default=True, help="Directory for the results file.")
@click.option("--resume", is_flag=True, help="Finish the newest interrupted run of this model and settings in --out.")
@click.option("--compile", "how", type=click.Choice(COMPILE_MODES), default="eager", show_default=True,
              help="Run every site, candidate and the network through torch.compile (inductor); compilation is "
                   "timed apart, never inside a timed block.")
def model(spec: str, input_shape: tuple[int, int, int, int] | None, dtype: str, device: str, mode: str,
          threads: int, budget: float, out_dir: Path, resume: bool, how: str) -> None:
    """Measure a real network layer by layer: every Conv2d as the network runs it, each against its
    separable, grouped and spatially-separable candidates (paired, interleaved, on its real input), and
    the whole network with the faster ones swapped in, against the sum of its layers. SPEC is
    torchvision:NAME, timm:NAME, sepbench:NAME or package.module:factory; no weights are downloaded."""
    from sepbench.measure.workload import require_device
    from sepbench.model.measure import Settings
    from sepbench.model.run import run as run_model
    from sepbench.report.tables import model_table, network_line
    from sepbench.store import ensure_writable, read_model

    require_device(device)
    ensure_writable(out_dir)
    settings = Settings(device=device, dtype=dtype, mode=mode, threads=threads, compile=how)
    try:
        path = run_model(spec, out_dir, input_shape=input_shape, s=settings, budget_s=budget * 60, resume=resume,
                         say=lambda line: err.print(line if line.startswith("sepbench: ") else f"[dim]{line}…[/dim]",
                                                    highlight=False, markup=not line.startswith("sepbench: ")))
    except (torch_oom(), MemoryError):
        raise SepbenchError(f"{spec} at {input_shape or 'its input'} does not fit in the {device}'s memory") from None
    found = read_model(path)
    out.print(model_table(found))
    out.print(network_line(found), highlight=False)
    out.print(f"→ {path}", highlight=False)


def torch_oom() -> type[BaseException]:
    """torch's out-of-memory error (imported only when a command measures)."""
    import torch

    return getattr(torch, "OutOfMemoryError", MemoryError)


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--preset", help="The grid the shards were cut from; files of any other grid are refused.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), help="A grid file (as --preset).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="As given to `sepbench run`.")
@THREADS
@click.option("--no-memory", is_flag=True, help="As given to `sepbench run`.")
@click.option("--axis", "axes", multiple=True, metavar="KEY=V1,V2", help="As given to `sepbench run` (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write each complete (grid, torch, device) as one run file here.")
def merge(results: tuple[Path, ...], preset: str | None, grid_file: Path | None, device: str | None,
          threads: int | None, no_memory: bool, axes: tuple[str, ...], out_dir: Path | None) -> None:
    """Check that shards (`sepbench run --shard K/N`, from any number of machines) hold every case of
    their grid exactly once per PyTorch build and device, and with --out write each as one run. Missing
    shards, missing or duplicated cases and foreign grids are listed, and the exit code is then 2."""
    from rich.table import Table

    from sepbench.merge import coverage as grid_coverage
    from sepbench.merge import merge as write_merged

    expected = (_grid_from(preset, grid_file, axes, device, threads, no_memory)
                if preset is not None or grid_file else None)
    coverage, problems = grid_coverage(list(results), expected)
    table = Table("grid", "torch", "device", "files", "shards", "cases", "measured", "missing", "duplicated",
                  title="shards", title_justify="left")
    for c in coverage:
        shards = f"{len({r.header.shard for r in c.runs if r.header})} of {c.shards_of}" if c.shards_of else "unsharded"
        table.add_row(c.grid_name, c.torch, c.device, str(len(c.runs)), shards, str(c.expected), str(c.measured),
                      str(len(c.missing)), str(len(c.duplicated)))
    out.print(table)
    lines = [str(p) for p in problems] + [line for c in coverage for line in c.problems()]
    if not coverage and not lines:
        lines.append(f"no results files in {', '.join(map(str, results))}")
    for line in lines[:-1]:
        err.print(f"sepbench: {line}", markup=False, highlight=False, soft_wrap=True)
    if lines:
        _fail(lines[-1] + (f" ({len(lines)} problems above and here; nothing merged)" if len(lines) > 1 else
                           " (nothing merged)"))
    for c in coverage:
        if out_dir is not None:
            out.print(f"{c.grid_name} · torch {c.torch} · {c.device}: {c.expected} cases → {write_merged(c, out_dir)}",
                      highlight=False)
        else:
            out.print(f"{c.grid_name} · torch {c.torch} · {c.device}: complete, {c.expected} cases", highlight=False)


@cli.command()
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results/local/report"),
              show_default=True, help="Directory for index.html and its figures.")
@click.option("--pytest-benchmark", "pb_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="pytest-benchmark storage to include (its latest save). Default: a pytest-benchmark/ "
                   "folder inside a RESULTS directory, if there is one.")
@click.option("--asv-url", help="Where the asv site is, relative to the report (e.g. asv/). Default: asv/ when "
                                "--out holds an asv site.")
def report(results: tuple[Path, ...], out_dir: Path, pb_dir: Path | None, asv_url: str | None) -> None:
    """Build the HTML report from results files or directories (default: results/): theory and
    measurement side by side, roofline, memory, and regressions across PyTorch versions."""
    from sepbench.report.page import build

    results = results or (Path("results"),)
    if pb_dir is None:
        found = (p / "pytest-benchmark" for p in results if p.is_dir())
        pb_dir = next((d for d in found if d.is_dir() and any(d.rglob("*.json"))), None)
    if asv_url is None and (out_dir / "asv" / "index.html").is_file():
        asv_url = "asv/"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("report")
        built = build(list(results), out_dir, pytest_benchmark=pb_dir, asv_url=asv_url,
                      step=lambda what: progress.update(task, description=what))
    out.print(f"report: {built.index} ({built.records} records from {built.files} files, "
              f"{len(built.environments)} environments, {len(built.figures)} figures; "
              f"page {built.page_bytes / 1e6:.1f} MB, data {built.data_bytes / 1e6:.1f} MB) in {built.seconds:.1f} s",
              highlight=False)
    if built.damaged:
        more = f" and {len(built.damaged) - 1} more" if len(built.damaged) > 1 else ""
        _fail(f"the report leaves out damaged results: {built.damaged[0]}{more} (listed on the page)")


def main(argv: list[str] | None = None) -> None:
    if any("\x00" in a for a in (sys.argv[1:] if argv is None else argv)):
        _fail("an argument holds a NUL byte, which no value or path can")  # only callers in Python can pass one
    try:
        code = cli.main(args=argv, prog_name="sepbench", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("sepbench: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        _fail(exc.format_message())
    except SepbenchError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("sepbench: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # the one boundary: no traceback reaches the user's terminal
        _internal(exc)
    sys.exit(code if isinstance(code, int) else 0)


EXIT_INTERNAL = 3


def _internal(exc: BaseException) -> NoReturn:
    """A fault of sepbench, not of the input: one line naming it and the file that holds its traceback,
    exit 3. The hostile tests and the fuzzers count this exit as a failure."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(exc))
    try:
        fd, path = tempfile.mkstemp(prefix="sepbench-internal-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"sepbench {__version__}, argv {sys.argv!r}\n{text}")
        where = f"traceback in {path}"
    except OSError:
        where = "the traceback could not be written"
    summary = (str(exc).splitlines() or [""])[0][:200]
    err.print(_printable(f"sepbench: internal error: {type(exc).__name__}: {summary} ({where}); please report it"),
              markup=False, highlight=False, soft_wrap=True)
    sys.exit(EXIT_INTERNAL)

"""The command line: parsing and wiring only. Each command's options are checked for their form here
(click), then handed to its module in `sepbench.commands`, which calls the API and prints. One boundary
(`main`) turns a refusal into one line and exit 2, a fault at run time or a bug into one line and exit 3,
and an interrupt into what was saved and exit 130."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from sepbench import __version__
from sepbench.case import ACTS, COMPILE_MODES, DTYPES, MODES, PADDINGS
from sepbench.console import err, printable
from sepbench.errors import InternalError, SepbenchError

EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int = EXIT_USAGE, what: str = "error") -> NoReturn:
    err.print(f"sepbench: {what}: {printable(message).strip()}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _check_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from sepbench.measure.timer import check_threads

    if value is not None:
        try:
            check_threads(value)
        except SepbenchError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


class Finite(click.FloatRange):
    """A float within a range, and finite: click's own range lets NaN through (every comparison with it
    is false)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Given(click.Path):
    """A path to write, never the empty one (which would quietly mean the working directory)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path; give one (e.g. . for this folder)", param, ctx)
        return super().convert(value, param, ctx)


def Folder() -> Given:
    return Given(file_okay=False, path_type=Path)


def OutFile() -> Given:
    return Given(dir_okay=False, path_type=Path)


def _preset(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("an empty name; see `sepbench list`")
    return value


THREADS = click.option("--threads", type=int, callback=_check_threads, metavar="N",
                       help="Intra-op threads, 1 to the cores available (default: 1 on a CPU, torch's on CUDA).")
PRESET = click.option("--preset", callback=_preset, help="A named grid (see `sepbench list`). Default: default.")
GRID = click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), help="A TOML grid file.")


def _grid(preset: str | None, grid_file: Path | None, default: str = "default", given: bool = False) -> Any:
    """The grid --preset or --grid names (`given`: None when neither is)."""
    from sepbench.grid import grid_from

    return None if given and preset is None and grid_file is None else grid_from(preset, grid_file, default)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="sepbench")
def cli() -> None:
    """How much cheaper separable, grouped and depthwise convolutions are in theory, and how much
    faster and leaner they are in practice, on this machine and this PyTorch."""


@cli.command()
@PRESET
@GRID
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Override the grid's device axis.")
@click.option("--out", "out_dir", type=Folder(), default=Path("results/local"),
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
    from sepbench.commands import run as command

    sys.exit(command.main(_grid(preset, grid_file), list(axes), device=device, out_dir=out_dir, resume=resume,
                          shard=shard_text, threads=threads, memory=not no_memory, profile=not no_profile,
                          dry_run=dry_run, target=target, budget=budget))


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
    from sepbench.commands import cost as command

    sys.exit(command.main(variant, layers, c_out=c_out, **knobs))


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
    from sepbench.commands import explain as command

    sys.exit(command.main(variant, device=device, threads=threads, paths=list(paths), measure=measure,
                          model_file=model_file, layer=layer, c_out=c_out, **knobs))


@cli.command(name="list")
def list_() -> None:
    """Variants and presets."""
    from sepbench.commands import info

    sys.exit(info.variants_and_presets())


@cli.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@THREADS
@click.option("--no-peaks", is_flag=True, help="Skip the peak microbenchmarks.")
def env(device: str, threads: int | None, no_peaks: bool) -> None:
    """Environment fingerprint and this machine's measured peaks (the roofline's ceilings)."""
    from sepbench.commands import info

    sys.exit(info.environment(device, threads, not no_peaks))


@cli.command()
@click.option("--preset", callback=_preset, help="Grid whose cases are checked (see `sepbench list`). Default: smoke.")
@GRID
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Override the grid's device axis.")
@THREADS
@click.option("--limit", type=click.IntRange(min=1), help="Check only the first N cases.")
@click.option("--csv", "csv_path", type=OutFile(),
              help="Also write one row per case (case id, the medians in seconds, the ratios) to this CSV file.")
def timercheck(preset: str | None, grid_file: Path | None, device: str | None, threads: int | None,
               limit: int | None, csv_path: Path | None) -> None:
    """Check sepbench's timer against torch.utils.benchmark.Timer (and CUDA events on a GPU),
    case by case, alternating the methods. Agreement is the ratio of medians."""
    from sepbench.commands import checks
    from sepbench.grid import configured

    grid = configured(_grid(preset, grid_file, default="smoke"), device=device)
    sys.exit(checks.timer_agreement(grid, threads, limit, csv_path))


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
@PRESET
@GRID
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
@click.option("--out", "out_dir", type=Folder(), default=Path("results/ab"),
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
    from sepbench.commands import compare

    sys.exit(compare.main(pythons, _grid(preset, grid_file, given=True), list(axes), threads=threads, budget=budget,
                          target=target, block_ms=block_ms, workers=workers, out=out_dir, resume=resume, aa=aa,
                          inject=inject, seed=seed, env_a=env_a, env_b=env_b, control=control, model=spec,
                          input=input_shape, dtype=dtype, mode=mode, fail_above=fail_above))


@cli.command(name="crosscheck")
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path), required=True,
              help="A comparison folder from `nox -s crosscheck` (sepbench runs, asv/, pytest-benchmark/), or "
                   "sepbench results files (repeatable).")
@click.option("--asv", "asv_dir", type=Folder(),
              help="asv results, one file per pass. Default: asv/ in the first --results folder.")
@click.option("--pytest-benchmark", "pb_dir", type=Folder(),
              help="pytest-benchmark saves, one per pass. Default: pytest-benchmark/ in the first --results folder.")
@click.option("--tolerance", type=Finite(min=0, min_open=True, max=10), default=0.10, show_default=True,
              help="Allowed relative difference (above 0).")
@click.option("--csv", "csv_path", type=OutFile(),
              help="Also write the table (medians in seconds, ratios) to this CSV file.")
def crosscheck_(results: tuple[Path, ...], asv_dir: Path | None, pb_dir: Path | None, tolerance: float,
                csv_path: Path | None) -> None:
    """Do `sepbench run`, asv and pytest-benchmark agree on the same cases? Pass k of each harness is
    held against sepbench's pass k; the agreement is the median of those ratios over the passes.
    Exit 1 if any lies outside 1 ± tolerance."""
    from sepbench.commands import checks

    sys.exit(checks.harness_agreement(list(results), asv_dir, pb_dir, tolerance, csv_path))


@cli.command()
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
def show(results: tuple[Path, ...]) -> None:
    """Merge results files (or directories of them) and print the table. Damaged lines are named
    with path:line; everything else still shows, and the exit code is then 2."""
    from sepbench.commands import files

    sys.exit(files.show(list(results)))


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
@click.option("--out", "out_dir", type=Folder(),
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
    from sepbench.commands import model as command

    sys.exit(command.main(spec, input_shape=input_shape, dtype=dtype, device=device, mode=mode, threads=threads,
                          budget=budget, out_dir=out_dir, resume=resume, how=how))


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--preset", help="The grid the shards were cut from; files of any other grid are refused.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, path_type=Path), help="A grid file (as --preset).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="As given to `sepbench run`.")
@THREADS
@click.option("--no-memory", is_flag=True, help="As given to `sepbench run`.")
@click.option("--axis", "axes", multiple=True, metavar="KEY=V1,V2", help="As given to `sepbench run` (repeatable).")
@click.option("--out", "out_dir", type=Folder(),
              help="Write each complete (grid, torch, device) as one run file here.")
def merge(results: tuple[Path, ...], preset: str | None, grid_file: Path | None, device: str | None,
          threads: int | None, no_memory: bool, axes: tuple[str, ...], out_dir: Path | None) -> None:
    """Check that shards (`sepbench run --shard K/N`, from any number of machines) hold every case of
    their grid exactly once per PyTorch build and device, and with --out write each as one run. Missing
    shards, missing or duplicated cases and foreign grids are listed, and the exit code is then 2."""
    from sepbench.commands import files
    from sepbench.grid import axes_from, configured

    expected = None
    if preset is not None or grid_file is not None:
        expected = configured(_grid(preset, grid_file), axes_from(axes), device, threads, not no_memory)
    sys.exit(files.merge(list(results), expected, out_dir))


@cli.command()
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=Folder(),
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
    from sepbench.commands import files

    sys.exit(files.report(list(results), out_dir, pb_dir, asv_url))


def main(argv: list[str] | None = None) -> None:
    from sepbench.api import Interrupted

    if any("\x00" in a for a in (sys.argv[1:] if argv is None else argv)):
        _fail("an argument holds a NUL byte, which no value or path can")  # only callers in Python can pass one
    try:
        code = cli.main(args=argv, prog_name="sepbench", standalone_mode=False)
    except Interrupted as exc:
        err.print(printable(str(exc)), markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_INTERRUPTED)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("sepbench: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        _fail(exc.format_message())
    except SepbenchError as exc:
        _fail(str(exc))
    except InternalError as exc:
        _fail(str(exc), EXIT_INTERNAL, "failed")
    except Exception as exc:  # the one boundary: no traceback reaches the user's terminal
        _internal(exc)
    sys.exit(code if isinstance(code, int) else 0)


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
    _fail(f"{type(exc).__name__}: {summary} ({where}); please report it", EXIT_INTERNAL, "internal error")

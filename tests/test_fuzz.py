"""Property-based fuzzing of every boundary: CLI argument vectors, grid files, and results records.

The property is the CLI's contract: exit 0, or exit 2 with exactly one `sepbench: error:` line as the
last line of stderr; never a traceback, never exit 3 (`sepbench: internal error`), never a staged
file left behind. Commands run in this process (`cli.main`), so hundreds of inputs cost seconds.
Where an input is accepted and the command would start measuring, the measuring entry point raises
`Accepted` instead: what is fuzzed is the validation in front of it, not the timing.

CI runs a fixed number of examples per target (`SEPBENCH_FUZZ_EXAMPLES`, default below); inputs that
once failed are pinned with `@example` so that they run on every CI pass. A long session:
`SEPBENCH_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py --hypothesis-show-statistics`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import committed, tiny_grid
from sepbench import cli

DEFAULT_EXAMPLES = 60  # per target, in CI: docs/commands.md says so
EXAMPLES = int(os.environ.get("SEPBENCH_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") is not None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
SMALL_RUN = "smoke-cpu-vm-torch2.13.0+cpu-20261123T120618Z.jsonl"  # a committed 36-record run


class Accepted(BaseException):
    """Raised where a command, its input accepted, would start measuring."""


def _accept(*_: object, **__: object) -> None:
    raise Accepted


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory holding what the path pools name, with every measuring entry point
    replaced by `Accepted`."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "results").mkdir()
    (run,) = committed(SMALL_RUN)
    shutil.copy(run, root / "results" / run.name)
    tiny_grid(root / "grid.toml")
    (root / "garbage.bin").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    monkeypatch.chdir(root)
    for target in ("sepbench.measure.runner.Runner.open", "sepbench.measure.explain.measure_case",
                   "sepbench.measure.peaks.measure_peaks", "sepbench.measure.timercheck.agreement",
                   "sepbench.ab.driver.Comparison.open", "sepbench.report.page.build", "sepbench.model.run.run",
                   "sepbench.model.explain.stage_times"):
        monkeypatch.setattr(target, _accept)
    yield root


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str]:
    """The CLI on `argv`, in this process: its exit code (or "accepted") and its stderr."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        cli.main(argv)
        code: int | str = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Accepted:
        code = "accepted"
    finally:
        signal.signal(signal.SIGTERM, handler)
    return code, capsys.readouterr().err


def assert_clean(argv: list[str], code: int | str, stderr: str, root: Path) -> None:
    where = f"sepbench {' '.join(map(repr, argv))} → exit {code}\n{stderr[-1500:]}"
    assert "Traceback" not in stderr and "internal error" not in stderr, where
    assert code in (0, 2, "accepted"), where
    errors = [line for line in stderr.splitlines() if line.startswith("sepbench: error:")]
    if code == 2:
        assert len(errors) == 1 and stderr.rstrip().endswith(errors[0].rstrip()), where
    else:
        assert not errors, where
    staged = [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".index-")]
    assert not staged, f"{where}\nhalf-written: {staged}"


# ------------------------------------------------------------------------------------------------
# Argument vectors for every command

HOSTILE = st.one_of(
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "-1", "0", "1", "2", "3", "1e309", "-0",
                     "99999999999999999999999", "9223372036854775807", "2/0", "0/0", "1/1", "3/2", "1/0", "/",
                     "all", "standard", "depthwise", "cuda", "cpu", "smoke", "default", "c_in=8", "c_in=",
                     "=8", "size=1e9", "stride=99999999999", "variants=nonexistent", "c_in=true", "é", "💥",
                     "\udcff", "--", "-", "grid.toml", "results", "garbage.bin", "nope", "/dev/null", "."]),
    st.text(max_size=12),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
)
SKIPPED = {"list"}  # no options; it expands every preset, which the hostile table times once
COMMANDS = sorted(set(cli.cli.commands) - SKIPPED)


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(COMMANDS))
    command = cli.cli.commands[name]
    options = [p for p in command.params if isinstance(p, click.Option)]
    chosen = draw(st.lists(st.sampled_from(options), max_size=5)) if options else []
    args = [name]
    for p in command.params:
        if isinstance(p, click.Argument):
            args += draw(st.lists(HOSTILE, min_size=1 if p.required else 0, max_size=2))
    for option in chosen:
        args.append(draw(st.sampled_from(option.opts)))
        if not option.is_flag:
            args.append(draw(HOSTILE))
    if name == "run" and draw(st.booleans()):
        args.append("--dry-run")
    return args


@FUZZ
@given(args=argv())
@example(args=["ab", "--budget", "nan", "--python", "nope"])
@example(args=["ab", "--target", "nan", "--aa", "--python", "nope"])
@example(args=["run", "--preset", "", "--dry-run"])
@example(args=["run", "--shard", "", "--dry-run"])
@example(args=["crosscheck", "--results", "results", "--tolerance", "nan"])
@example(args=["crosscheck", "--results", "results", "--tolerance", "-1"])
@example(args=["cost", "standard", "--stride", "99999999999999999999"])
@example(args=["explain", "standard", "--dilation", "9223372036854775807", "--measure"])
@example(args=["explain", "standard", "--results", "garbage.bin"])
@example(args=["ab", "--seed", "-1", "--aa", "--python", "nope"])
@example(args=["merge", "", "--preset", "", "--grid", "\x00"])  # found by a long session: a NUL in a path
@example(args=["show", "a\nb\udcff"])  # found by a long session: a newline and a lone surrogate in a path
def test_any_argument_vector_ends_cleanly(args: list[str], world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = invoke(args, capsys)
    assert_clean(args, code, stderr, world)


# ------------------------------------------------------------------------------------------------
# Grid files

AXIS_VALUES = st.one_of(
    st.integers(-(2**64), 2**64), st.booleans(), st.floats(), st.text(max_size=8),
    st.sampled_from([1, 2, 3, 8, 16, 28, 2**31, 2**63 - 1, 10**20, "same", "valid", "float32", "cuda", "train"]),
)
AXES = ["variants", "c_in", "c_out", "size", "kernel", "stride", "dilation", "padding", "bias", "act", "groups",
        "expansion", "alpha", "batch", "dtype", "device", "mode", "memory_format", "cudnn_benchmark", "tf32", "bogus"]
MEASURE = ["min_run_time", "min_rounds", "max_rounds", "block_time", "warmup_time", "target", "threads", "memory",
           "budget_s", "sitting_rounds", "min_sittings", "unstable_threshold"]


def toml_value(v: object) -> str:
    """A TOML literal: json's strings, numbers and booleans are TOML's, except the non-finite floats."""
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return json.dumps(v)


@st.composite
def grid_text(draw: st.DrawFn) -> str:
    variant = st.sampled_from(["standard", "depthwise", "pointwise", "grouped", "depthwise_separable",
                               "inverted_residual", "mobilenet_v2", "nonexistent", ""])
    axes = draw(st.dictionaries(st.sampled_from(AXES), st.lists(AXIS_VALUES, max_size=3), max_size=5))
    if draw(st.booleans()):
        axes["variants"] = draw(st.lists(variant, min_size=0, max_size=3))
    measure = draw(st.dictionaries(st.sampled_from(MEASURE), AXIS_VALUES, max_size=3))
    text = "[grid]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in axes.items())
    text += "[measure]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in measure.items())
    if draw(st.booleans()):  # damage: a cut at a random byte
        text = text[: draw(st.integers(0, len(text)))]
    return text


@FUZZ
@given(text=grid_text())
@example(text='[grid]\nc_in = [true]\n')
@example(text='[grid]\nstride = [100000000000000000000]\nsize = [8]\nc_in = [8]\n')
@example(text='[grid]\ndilation = [9223372036854775807]\nsize = [8]\nc_in = [8]\n')
@example(text='[grid]\nvariants = [""]\n')
@example(text='[measure]\nmin_rounds = true\n')
@example(text='[grid]\nbias = [1]\n')
def test_any_grid_file_ends_cleanly(text: str, world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = world / "fuzzed.toml"
    grid.write_text(text, encoding="utf-8")
    for args in (["run", "--grid", str(grid), "--dry-run"], ["run", "--grid", str(grid), "--out", "out"],
                 ["timercheck", "--grid", str(grid)]):
        code, stderr = invoke(args, capsys)
        assert_clean(args, code, stderr, world)


# ------------------------------------------------------------------------------------------------
# Results records, mutated from a real run

NASTY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "nonexistent", "\ud800", "NaN", "-1", [], {}, [1, 2], {"a": 1}, -1, 0, -1.5, 1e308]),
    st.text(max_size=6),
)


def _paths(value: object, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path into a JSON value (dict keys, list indices)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, (*prefix, i))


def _set(value: object, path: tuple, new: object, delete: bool) -> object:
    if not path:
        return new
    *head, last = path
    parent = value
    for step in head:
        parent = parent[step]  # type: ignore[index]
    if delete and isinstance(parent, dict):
        del parent[last]
    else:
        parent[last] = new  # type: ignore[index]
    return value


@st.composite
def mutated_file(draw: st.DrawFn) -> bytes:
    (run,) = committed(SMALL_RUN)
    lines = run.read_bytes().splitlines()
    how = draw(st.sampled_from(["value", "value", "value", "delete", "truncate", "duplicate", "swap"]))
    i = draw(st.integers(0, len(lines) - 1))
    if how in ("value", "delete"):
        record = json.loads(lines[i])
        path = draw(st.sampled_from(list(_paths(record))[1:]))
        record = _set(record, path, draw(NASTY), how == "delete")
        lines[i] = json.dumps(record).encode()
    elif how == "truncate":
        lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    elif how == "duplicate":
        lines.insert(i, lines[i])
    else:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines) + b"\n"


def _header_with(part: str, key: str, value: object) -> bytes:
    """The committed run with one value of its header replaced: a regression case a long session found."""
    (run,) = committed(SMALL_RUN)
    lines = run.read_bytes().splitlines()
    header = json.loads(lines[0])
    header[part][key] = value
    return b"\n".join([json.dumps(header).encode(), *lines[1:]]) + b"\n"


@FUZZ
@given(data=mutated_file())
@example(data=_header_with("grid", "measure", True))
@example(data=_header_with("environment", "torch", [2, 13]))
@example(data=_header_with("environment", "machine", None))
@example(data=json.dumps({"kind": "case", "case": {"variant": "nonexistent"}}).encode())
def test_any_damaged_results_file_ends_cleanly(data: bytes, world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = world / "mutated"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "r.jsonl").write_bytes(data)
    for args in (["show", str(folder)], ["merge", str(folder), "--out", str(world / "merged")],
                 ["explain", "depthwise", "--c-in", "32", "--size", "28", "--results", str(folder)],
                 ["report", str(folder), "--out", str(world / "page")]):
        code, stderr = invoke(args, capsys)
        assert_clean(args, code, stderr, world)


def test_the_docs_state_the_fuzzing_budget() -> None:
    commands = " ".join((Path(__file__).resolve().parent.parent / "docs" / "commands.md").read_text().split())
    assert f"CI runs {DEFAULT_EXAMPLES} examples per target with a fixed seed" in commands

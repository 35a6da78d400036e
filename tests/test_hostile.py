"""Hostile input, table-driven: every command of the CLI and the grid parser against inputs that have
broken it or could. Each outcome must be exit 0 (with records, where the command writes them) or
exit 2 with exactly one `sepbench: error:` line; never a traceback, a hang past 30 s, or more than
2 GB of memory."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from conftest import committed

LIMIT_S, LIMIT_RSS = 30.0, 2 * 2**30
BIG = "99999999999999999999999"
GRID_HEAD = '[grid]\nvariants = ["standard", "depthwise"]\nc_in = [8]\nsize = [8]\n'
FAST = "[measure]\nmin_run_time = 0.005\nmin_rounds = 3\nmax_rounds = 5\nblock_time = 0.001\nwarmup_time = 0.001\n" \
       "memory = false\nthreads = 1\n"


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int


def _cli(args: list[str], cwd: str, out: str, err: str) -> None:
    """In the child: `python -m sepbench ARGS` from `cwd`, stdin closed, stdout and stderr to files, its exit
    code the process's (an exception that escapes prints its traceback and exits 1, as Python would)."""
    import runpy
    import traceback

    os.chdir(cwd)
    os.environ["COLUMNS"] = "200"
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(path, flags, 0o600), fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a user's shell starts it
    for name in [m for m in sys.modules if m == "sepbench" or m.startswith("sepbench.")]:
        del sys.modules[name]  # imported afresh, under this environment (the console reads COLUMNS as it is made)
    sys.argv = ["sepbench", *args]
    code = 0
    try:
        runpy.run_module("sepbench", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(code)


def _run(args: list[str], cwd: Path) -> Outcome:
    """The CLI in its own process, watched: its peak RSS (with children) and wall time, killed at the limit.
    The process is forked from sepbench's forkserver, which has torch and the CLI imported already: a
    process of its own, as a user's is, without the seconds every fresh interpreter spends importing torch
    (131 of those were most of this file's time)."""
    from sepbench.measure.fresh import _probe_context

    started = time.perf_counter()
    streams = Path(tempfile.mkdtemp(prefix="sepbench-hostile-"))  # outside cwd: no scenario lists it
    out, err = streams / "stdout", streams / "stderr"
    proc = _probe_context().Process(target=_cli, args=(list(args), str(cwd), str(out), str(err)))
    proc.start()
    watched, peak = psutil.Process(proc.pid), 0
    while proc.exitcode is None and time.perf_counter() - started < LIMIT_S:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]))
        if peak > LIMIT_RSS:
            break
        time.sleep(0.05)
    if proc.exitcode is None:
        with contextlib.suppress(psutil.Error):
            for child in watched.children(recursive=True):
                child.kill()
        proc.kill()
    proc.join()
    code = proc.exitcode
    stdout, stderr = (p.read_text(errors="replace") if p.exists() else "" for p in (out, err))
    shutil.rmtree(streams, ignore_errors=True)
    return Outcome(None if code is None or code < 0 else code, stdout, stderr, time.perf_counter() - started, peak)


# ------------------------------------------------------------------------------------------------
# Hostile files, made from one real results file of a tiny run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a real results file (`good/`) and damaged or odd variants of it, one per folder."""
    root = tmp_path_factory.mktemp("hostile")
    grid = root / "fast.toml"
    grid.write_text(GRID_HEAD + FAST)
    done = _run(["run", "--grid", str(grid), "--out", str(root / "good")], root)
    assert done.code == 0, done.stderr
    (good,) = (root / "good").glob("*.jsonl")
    lines = good.read_text().splitlines()
    header, records = lines[0], lines[1:]
    record = json.loads(records[0])

    def folder(name: str, text: str | bytes, file: str = "r.jsonl") -> None:
        (root / name).mkdir()
        target = root / name / file
        target.write_bytes(text if isinstance(text, bytes) else text.encode())

    def with_timing(**changes: object) -> str:
        bad = json.loads(records[0])
        bad["timing"].update(changes)
        return json.dumps(bad)

    body = "\n".join(records) + "\n"
    folder("torn", header + "\n" + body + records[0][:40])
    folder("nested", header + "\n" + "[" * 200_000 + "\n" + body)
    folder("nan", header + "\n" + with_timing(median_s=float("nan")) + "\n" + "\n".join(records[1:]) + "\n")
    rest = "\n".join(records[1:]) + "\n"
    folder("negative", header + "\n" + with_timing(median_s=-5e-5, times_s=[-5e-5]) + "\n" + rest)
    folder("duplicated", header + "\n" + body + records[0] + "\n")
    folder("concatenated", (header + "\n" + body) + json.dumps({**json.loads(header), "run_id": "other"}) + "\n"
           + "\n".join(json.dumps({**json.loads(r), "run_id": "other"}) for r in records) + "\n")
    folder("future", json.dumps({**json.loads(header), "schema_version": 99}) + "\n" + body)
    folder("headerless", body)
    folder("one-baseline", header + "\n" + next(r for r in records if '"variant":"standard"' in r) + "\n")
    folder("garbage", os.urandom(4096))
    folder("empty", b"")
    folder("not-json", header + "\n" + "{not json\n" + body)
    folder("foreign-kind", header + "\n" + json.dumps({**record, "kind": "mystery"}) + "\n" + body)
    # Valid JSON, not valid data: a variant this sepbench does not know, a lone surrogate, an id that
    # contradicts its case, a negative batch, and a machine whose peaks are negative.
    def with_case(**changes: object) -> str:
        return json.dumps({**record, "case": {**record["case"], **changes}})

    folder("unknown-variant", header + "\n" + with_case(variant="nonexistent") + "\n" + body)
    folder("surrogate", header + "\n" + json.dumps({**record, "backend": "\ud800"}) + "\n" + rest)
    folder("id-mismatch", header + "\n" + with_case(batch=7) + "\n" + rest)
    folder("negative-batch", header + "\n" + with_case(batch=-1) + "\n" + rest)
    peaks = json.loads(header)
    peaks["peaks"]["cpu"]["bandwidth"] = -1.0
    folder("negative-peaks", json.dumps(peaks) + "\n" + body)
    # An A/B comparison with one damaged line beside a good run; harness files cut short or misshapen.
    (ab,) = committed(AB_FILE)
    ab_lines = ab.read_text().splitlines()
    ab_lines[5] = ab_lines[5][: len(ab_lines[5]) // 2]
    folder("ab-damaged", good.read_text(), "run.jsonl")
    (root / "ab-damaged" / "ab.jsonl").write_text("\n".join(ab_lines) + "\n")
    for name, asv_text, pb_text in (("asv-truncated", '{"results": {"bench', "{}"),
                                    ("asv-results-string", '{"results": "oops", "result_columns": []}', "{}"),
                                    ("pb-truncated", '{"results": {}}', '{"benchmarks": [{"extra')):
        folder(name, good.read_text(), "run.jsonl")
        for harness, text in (("asv", asv_text), ("pytest-benchmark", pb_text)):
            (root / name / harness).mkdir()
            (root / name / harness / "x.json").write_text(text)
    (root / "gz").mkdir()
    (root / "gz" / "r.jsonl").write_bytes(gzip.compress(good.read_bytes()))
    # Interpreters that answer the probe with the wrong shape.
    for name, answer in (("py-empty", "{}"), ("py-null", "null"), ("py-list", "[1]"),
                         ("py-no-prefix", '{"torch": true, "sepbench": true, "worker": true}')):
        fake = root / name
        fake.write_text(f"#!/bin/sh\necho '{answer}'\n")
        fake.chmod(0o755)
    (root / "copied").mkdir()
    for name in ("a.jsonl", "a.backup.jsonl"):
        (root / "copied" / name).write_text(good.read_text())
    (root / "no-results").mkdir()
    (root / "no-results" / "notes.txt").write_text("nothing here")
    os.mkfifo(root / "fifo.toml")
    (root / "grid-dir").mkdir()
    # A folder whose only results-like name is a FIFO: a resume must pass over it, not wait on it.
    (root / "fifo-out").mkdir()
    os.mkfifo(root / "fifo-out" / "default-cpu-vm-torch2.13.0+cpu-20260101T000000Z.jsonl")
    (root / "a-file").write_text("not a folder")
    return root


def _grid(root: Path, name: str, text: str | bytes) -> str:
    path = root / f"{name}.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


_VALUES = ", ".join(map(str, range(1, 301)))
AB_FILE = "ab/aa-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-20261123T153414Z.jsonl"
ONE_GEOMETRY = GRID_HEAD + FAST  # 2 cases, one group: its shard 2/2 is empty
MILLION_GRID = ("[grid]\nc_in = [" + ", ".join(map(str, range(1, 1001))) + "]\nsize = ["
                + ", ".join(map(str, range(1, 1001))) + "]\n")  # exactly 10⁶ combinations
HUGE_GRID = ("[grid]\nc_in = [" + _VALUES + "]\nsize = [" + _VALUES
             + "]\nkernel = [1, 3, 5, 7, 9]\nbatch = [1, 2, 4, 8]\ndtype = [\"float32\", \"bfloat16\"]\n"
             "mode = [\"inference\", \"train\"]\n")  # 1.44·10⁷ combinations

# Each scenario: (id, args builder). Paths are made inside the fixture's folder.
Scenario = tuple[str, Callable[[Path], list[str]]]
SCENARIOS: list[Scenario] = [
    # cost: the calculator
    ("cost-storage-overflow", lambda r: ["cost", "all", "--c-in", "1000000000", "--size", "100000"]),
    ("cost-bigint-channels", lambda r: ["cost", "all", "--c-in", BIG]),
    ("cost-zero-c-out", lambda r: ["cost", "standard", "--c-out", "0"]),
    ("cost-negative-c-in", lambda r: ["cost", "standard", "--c-in", "-5"]),
    ("cost-prime-groups", lambda r: ["cost", "grouped", "--c-in", "1000000007", "--groups", "3"]),
    ("cost-large-prime-groups", lambda r: ["cost", "grouped", "--c-in", "1000003", "--groups", "3", "--size", "8"]),
    ("cost-zero-groups", lambda r: ["cost", "grouped", "--groups", "0"]),
    ("cost-even-kernel", lambda r: ["cost", "standard", "--kernel", "4"]),
    ("cost-zero-size", lambda r: ["cost", "standard", "--size", "0"]),
    ("cost-huge-dilation", lambda r: ["cost", "standard", "--dilation", "1000000"]),
    ("cost-huge-batch", lambda r: ["cost", "standard", "--batch", BIG]),
    ("cost-unknown-variant", lambda r: ["cost", "nonsense"]),
    ("cost-network-alpha-zero", lambda r: ["cost", "mobilenet_v1", "--alpha", "0"]),
    ("cost-network-alpha-nan", lambda r: ["cost", "mobilenet_v1", "--alpha", "nan"]),
    ("cost-network-tiny", lambda r: ["cost", "mobilenet_v1", "--size", "16"]),
    ("cost-float-channels", lambda r: ["cost", "standard", "--c-in", "3.5"]),
    ("cost-valid", lambda r: ["cost", "all", "--c-in", "16", "--size", "8"]),
    # run: options
    ("run-axis-billion-channels", lambda r: ["run", "--grid", _grid(r, "g1", GRID_HEAD + FAST), "--axis",
                                             "c_in=1000000000", "--out", str(r / "o1")]),
    ("run-axis-too-big-for-memory", lambda r: ["run", "--grid", _grid(r, "g0", GRID_HEAD + FAST), "--axis",
                                               "c_in=100000", "--out", str(r / "o0")]),
    ("run-axis-bigint", lambda r: ["run", "--grid", _grid(r, "g2", GRID_HEAD + FAST), "--axis", f"c_in={BIG}",
                                   "--out", str(r / "o2")]),
    ("run-axis-unknown-key", lambda r: ["run", "--axis", "bogus=1"]),
    ("run-axis-not-a-number", lambda r: ["run", "--axis", "c_in=abc"]),
    ("run-axis-empty", lambda r: ["run", "--axis", "c_in="]),
    ("run-axis-no-key", lambda r: ["run", "--axis", "=3"]),
    ("run-axis-unknown-variant", lambda r: ["run", "--axis", "variants=nope"]),
    ("run-axis-unknown-compile", lambda r: ["run", "--axis", "compile=eager,jit", "--dry-run"]),
    ("run-axis-compile-empty", lambda r: ["run", "--axis", "compile=", "--dry-run"]),
    ("model-compile-unknown", lambda r: ["model", "sepbench:mobilenet_v2", "--compile", "jit"]),
    ("run-threads-huge", lambda r: ["run", "--threads", "100000"]),
    ("run-threads-zero", lambda r: ["run", "--threads", "0"]),
    ("run-shard-zero", lambda r: ["run", "--shard", "0/4"]),
    ("run-shard-past-end", lambda r: ["run", "--shard", "5/4"]),
    ("run-shard-words", lambda r: ["run", "--shard", "a/b"]),
    ("run-unknown-preset", lambda r: ["run", "--preset", "nope"]),
    ("run-preset-and-grid", lambda r: ["run", "--preset", "smoke", "--grid", _grid(r, "g3", GRID_HEAD)]),
    ("run-cuda-without-gpu", lambda r: ["run", "--preset", "smoke", "--device", "cuda"]),
    ("run-out-is-a-file", lambda r: ["run", "--grid", _grid(r, "g4", GRID_HEAD + FAST), "--out", _grid(r, "g5", "")]),
    ("run-out-unwritable", lambda r: ["run", "--grid", _grid(r, "g6", GRID_HEAD + FAST), "--out", "/proc/sepbench"]),
    ("run-resume-nothing", lambda r: ["run", "--grid", _grid(r, "g7", GRID_HEAD + FAST), "--resume", "--out",
                                      str(r / "o7")]),
    ("run-valid", lambda r: ["run", "--grid", _grid(r, "g8", GRID_HEAD + FAST), "--out", str(r / "o8")]),
    # run: grid files
    ("grid-fifo", lambda r: ["run", "--grid", str(r / "fifo.toml")]),
    ("grid-dev-zero", lambda r: ["run", "--grid", "/dev/zero"]),
    ("grid-directory", lambda r: ["run", "--grid", str(r / "grid-dir")]),
    ("grid-missing", lambda r: ["run", "--grid", str(r / "nope.toml")]),
    ("grid-invalid-utf8", lambda r: ["run", "--grid", _grid(r, "u", b"[grid]\nc_in = [8]\n# \xff\xfe\n")]),
    ("grid-not-toml", lambda r: ["run", "--grid", _grid(r, "t", "[grid\nc_in = ")]),
    ("grid-block-time-inf", lambda r: ["run", "--grid", _grid(r, "inf", GRID_HEAD + "[measure]\nblock_time = inf\n")]),
    ("grid-block-time-nan", lambda r: ["run", "--grid", _grid(r, "nan", GRID_HEAD + "[measure]\nblock_time = nan\n")]),
    ("grid-block-time-huge", lambda r: ["run", "--grid", _grid(r, "bt", GRID_HEAD + "[measure]\nblock_time = 1e9\n")]),
    ("grid-bigint-channels", lambda r: ["run", "--grid", _grid(r, "big", '[grid]\nc_in = [100000000000000000000000]\n'),
                                        "--out", str(r / "obig")]),
    ("grid-rounds-reversed", lambda r: ["run", "--grid", _grid(r, "rr", GRID_HEAD + "[measure]\nmin_rounds = 50\n"
                                                                         "max_rounds = 2\n")]),
    ("grid-threads-huge", lambda r: ["run", "--grid", _grid(r, "th", GRID_HEAD + "[measure]\nthreads = 100000\n")]),
    ("grid-threads-over-cores", lambda r: ["run", "--grid", _grid(r, "tc", GRID_HEAD + FAST.replace(
        "threads = 1", f"threads = {len(os.sched_getaffinity(0)) + 1}")), "--out", str(r / "otc")]),
    ("grid-unknown-key", lambda r: ["run", "--grid", _grid(r, "k", "[grid]\nchannels = [8]\n")]),
    ("grid-wrong-type", lambda r: ["run", "--grid", _grid(r, "w", '[grid]\nc_in = "eight"\n')]),
    ("grid-empty-axis", lambda r: ["run", "--grid", _grid(r, "e", "[grid]\nvariants = []\n")]),
    ("grid-eighteen-million", lambda r: ["run", "--grid", _grid(r, "huge", HUGE_GRID)]),
    ("grid-eighteen-million-sharded", lambda r: ["run", "--dry-run", "--shard", "7/1000", "--grid",
                                                 _grid(r, "huge", HUGE_GRID)]),
    # env, timercheck, list
    ("env-threads-huge", lambda r: ["env", "--threads", "100000", "--no-peaks"]),
    ("env-cuda-without-gpu", lambda r: ["env", "--device", "cuda", "--no-peaks"]),
    ("timercheck-threads-huge", lambda r: ["timercheck", "--threads", "100000"]),
    ("timercheck-limit-zero", lambda r: ["timercheck", "--limit", "0"]),
    ("timercheck-unknown-preset", lambda r: ["timercheck", "--preset", "nope"]),
    ("list", lambda r: ["list"]),
    ("unknown-command", lambda r: ["frobnicate"]),
    # show and report on damaged, odd or missing results
    *[(f"show-{name}", lambda r, name=name: ["show", str(r / name)]) for name in (
        "torn", "nested", "nan", "negative", "duplicated", "concatenated", "future", "headerless", "one-baseline",
        "garbage", "empty", "not-json", "foreign-kind", "copied", "no-results", "nope")],
    *[(f"report-{name}", lambda r, name=name: ["report", str(r / name), "--out", str(r / f"report-{name}")])
      for name in ("torn", "nan", "negative", "duplicated", "concatenated", "future", "headerless", "one-baseline",
                   "garbage", "empty", "copied", "no-results", "nope")],
    ("report-out-unwritable", lambda r: ["report", str(r / "good"), "--out", "/proc/sepbench"]),
    # records that are valid JSON but not valid data, and damage that must be named
    *[(f"show-{name}", lambda r, name=name: ["show", str(r / name)]) for name in (
        "unknown-variant", "surrogate", "id-mismatch", "negative-batch", "negative-peaks", "gz")],
    *[(f"merge-{name}", lambda r, name=name: ["merge", str(r / name), "--out", str(r / f"merged-{name}")])
      for name in ("unknown-variant", "surrogate", "id-mismatch")],
    ("report-surrogate", lambda r: ["report", str(r / "surrogate"), "--out", str(r / "report-surrogate")]),
    ("report-ab-damaged", lambda r: ["report", str(r / "ab-damaged"), "--out", str(r / "report-ab-damaged")]),
    ("explain-gzip", lambda r: ["explain", "depthwise", "--c-in", "8", "--size", "8", "--results",
                                str(r / "gz" / "r.jsonl")]),
    ("explain-fifo", lambda r: ["explain", "depthwise", "--c-in", "8", "--size", "8", "--results",
                                str(r / "fifo.toml")]),
    # geometry that would overflow torch or oneDNN
    ("cost-stride-overflow", lambda r: ["cost", "standard", "--stride", "100000000000000000000"]),
    ("explain-dilation-overflow", lambda r: ["explain", "standard", "--dilation", "9223372036854775807",
                                             "--measure"]),
    ("grid-stride-overflow", lambda r: ["run", "--grid", _grid(r, "so", GRID_HEAD + "stride = [9223372036854775807]\n"
                                                                         + FAST), "--out", str(r / "o9")]),
    ("timercheck-stride-overflow", lambda r: ["timercheck", "--grid", _grid(r, "so2", GRID_HEAD.replace(
        "size = [8]", "size = [8]\nstride = [100000000000000000000]"))]),
    # options that would let NaN or nothing through
    ("ab-budget-nan", lambda r: ["ab", "--aa", "--python", sys.executable, "--budget", "nan"]),
    ("ab-target-nan", lambda r: ["ab", "--aa", "--python", sys.executable, "--target", "nan"]),
    ("ab-seed-negative", lambda r: ["ab", "--aa", "--python", sys.executable, "--seed", "-1"]),
    ("run-preset-empty", lambda r: ["run", "--preset", "", "--dry-run"]),
    ("run-shard-empty", lambda r: ["run", "--shard", "", "--dry-run"]),
    ("grid-bool-channels", lambda r: ["run", "--dry-run", "--grid", _grid(r, "bc", "[grid]\nc_in = [true]\n")]),
    ("grid-number-flag", lambda r: ["run", "--dry-run", "--grid", _grid(r, "nf", "[grid]\nbias = [1]\n")]),
    ("grid-bool-rounds", lambda r: ["run", "--dry-run", "--grid", _grid(r, "br", "[measure]\nmin_rounds = true\n")]),
    ("grid-empty-variant", lambda r: ["run", "--dry-run", "--grid", _grid(r, "ev", '[grid]\nvariants = [""]\n')]),
    ("grid-million", lambda r: ["run", "--dry-run", "--grid", _grid(r, "million", MILLION_GRID)]),
    # interpreters whose probe answer has the wrong shape
    *[(f"ab-{name}", lambda r, name=name: ["ab", "--aa", "--python", str(r / name), "--out", str(r / "ab-out")])
      for name in ("py-empty", "py-null", "py-list", "py-no-prefix")],
    ("ab-no-cases", lambda r: ["ab", "--aa", "--python", sys.executable, "--out", str(r / "ab-none"), "--grid",
                               _grid(r, "nc", '[grid]\nvariants = ["standard"]\nkernel = [4]\n')]),
    # harness files cut short or misshapen, and tolerances that pass everything
    *[(f"crosscheck-{name}", lambda r, name=name: ["crosscheck", "--results", str(r / name)])
      for name in ("asv-truncated", "asv-results-string")],
    ("report-pb-truncated", lambda r: ["report", str(r / "good"), "--pytest-benchmark",
                                       str(r / "pb-truncated" / "pytest-benchmark"), "--out", str(r / "report-pb")]),
    ("crosscheck-tolerance-nan", lambda r: ["crosscheck", "--results", str(r / "good"), "--tolerance", "nan"]),
    ("crosscheck-tolerance-negative", lambda r: ["crosscheck", "--results", str(r / "good"), "--tolerance", "-1"]),
    ("crosscheck-missing", lambda r: ["crosscheck", "--results", str(r / "nope"), "--asv", str(r / "nope")]),
    # output paths that cannot be written, and the empty path (which would quietly mean the working directory)
    ("run-out-empty", lambda r: ["run", "--grid", _grid(r, "oe", GRID_HEAD + FAST), "--out", ""]),
    ("model-out-empty", lambda r: ["model", "sepbench:xception_block", "--out", ""]),
    ("ab-out-empty", lambda r: ["ab", "--aa", "--python", sys.executable, "--out", ""]),
    ("report-out-a-file", lambda r: ["report", str(r / "good"), "--out", str(r / "a-file")]),
    ("merge-out-a-file", lambda r: ["merge", str(r / "good"), "--out", str(r / "a-file")]),
    ("crosscheck-csv-under-a-file", lambda r: ["crosscheck", "--results", str(r / "asv-truncated"), "--csv",
                                               str(r / "a-file" / "x.csv")]),
    ("timercheck-csv-missing-folder", lambda r: ["timercheck", "--limit", "1", "--csv", str(r / "nope" / "x.csv")]),
    ("timercheck-csv-a-folder", lambda r: ["timercheck", "--limit", "1", "--csv", str(r / "grid-dir")]),
    # a FIFO named like results in the folder a resume reads
    ("run-resume-fifo", lambda r: ["run", "--resume", "--out", str(r / "fifo-out")]),
    ("model-resume-fifo", lambda r: ["model", "sepbench:xception_block", "--resume", "--out", str(r / "fifo-out")]),
    ("crosscheck-no-harnesses", lambda r: ["crosscheck", "--results", str(r / "good"), "--asv", str(r / "grid-dir"),
                                           "--pytest-benchmark", str(r / "grid-dir")]),
]


def test_the_table_is_large_enough_and_the_docs_count_it() -> None:
    assert len(SCENARIOS) >= 60
    assert len({name for name, _ in SCENARIOS}) == len(SCENARIOS)
    commands = (Path(__file__).resolve().parent.parent / "docs" / "commands.md").read_text()
    assert f"holds that to {len(SCENARIOS)} hostile inputs" in commands


@pytest.fixture(scope="module")
def outcomes(world: Path) -> dict[str, Outcome]:
    """Every scenario, two at a time (each is its own process)."""
    with ThreadPoolExecutor(2) as pool:
        done = pool.map(lambda s: (s[0], _run(s[1](world), world)), SCENARIOS)
        return dict(done)


@pytest.mark.parametrize("name", [name for name, _ in SCENARIOS])
def test_hostile_input_ends_cleanly(name: str, outcomes: dict[str, Outcome], world: Path) -> None:
    o = outcomes[name]
    where = f"{name}: exit {o.code}, {o.seconds:.1f} s, {o.peak_rss / 2**20:.0f} MiB\n{o.stderr[-2000:]}"
    assert o.code is not None and o.seconds < LIMIT_S, f"hung or killed: {where}"
    assert o.peak_rss < LIMIT_RSS, f"too much memory: {where}"
    assert "Traceback" not in o.stderr + o.stdout, where
    assert o.code in (0, 2), where
    errors = [line for line in o.stderr.splitlines() if line.startswith("sepbench: error:")]
    if o.code == 2:
        assert len(errors) == 1 and o.stderr.rstrip().endswith(errors[0].rstrip()), where
    else:
        assert not errors, where
    if name.startswith("run-") or name.startswith("grid-"):
        outs = [world / d for d in ("o0", "o1", "o2", "o7", "o8", "obig", "otc")]
        for results in (f for d in outs if d.is_dir() for f in d.glob("*.jsonl")):
            lines = results.read_text().splitlines()
            assert len(lines) > 1, f"{name}: header-only results file left behind: {results}"


def test_a_grid_too_large_is_refused_before_it_is_expanded(outcomes: dict[str, Outcome]) -> None:
    o = outcomes["grid-eighteen-million"]
    assert o.code == 2 and "axis combinations" in o.stderr and "--shard" in o.stderr and o.seconds < 15


def test_a_shard_of_a_huge_grid_costs_its_own_size(outcomes: dict[str, Outcome]) -> None:
    """1/1000 of 1.44·10⁷ combinations is planned in seconds: the other 999 slices are never built."""
    o = outcomes["grid-eighteen-million-sharded"]
    assert o.code == 0 and "(shard 7/1000)" in o.stdout and o.seconds < 15, o.stderr
    cases = int(o.stdout.split(": ")[1].split(" cases")[0])
    assert 0 < cases < 30_000


def test_the_valid_scenarios_write_or_print_results(outcomes: dict[str, Outcome], world: Path) -> None:
    assert outcomes["run-valid"].code == 0 and len(list((world / "o8").glob("*.jsonl"))) == 1
    assert outcomes["cost-valid"].code == 0 and "depthwise_separable" in outcomes["cost-valid"].stdout
    assert outcomes["show-torn"].code == 0 and "torn last line" in outcomes["show-torn"].stderr


@pytest.mark.parametrize(("name", "fragment"), [
    ("show-nan", "timing.median_s: Input should be a finite number"),
    ("show-negative", "greater than 0"),
    ("show-duplicated", "repeat records"),
    ("show-concatenated", "two runs' files concatenated"),
    ("show-future", "schema version 99"),
    ("show-copied", "repeat records already read from"),
    ("show-headerless", "a case record before any run header"),
    ("run-threads-huge", "cores"),
    ("grid-threads-over-cores", "cores"),
    ("env-threads-huge", "cores"),
    ("run-axis-too-big-for-memory", "GiB of memory"),
    ("run-axis-billion-channels", "elements"),
    ("grid-rounds-reversed", "min_rounds (50) exceeds max_rounds (2)"),
    ("grid-fifo", "not a regular file"),
    ("grid-dev-zero", "not a regular file"),
    ("grid-invalid-utf8", "not UTF-8"),
    ("cost-zero-c-out", "c_out must be a positive integer"),
    ("cost-storage-overflow", "elements"),
    ("cost-prime-groups", "elements"),
    ("cost-large-prime-groups", "valid groups: 1, 1000003"),
    ("show-unknown-variant", "unknown to this sepbench"),
    ("merge-unknown-variant", "unknown to this sepbench"),
    ("show-surrogate", "not valid Unicode"),
    ("merge-surrogate", "not valid Unicode"),
    ("show-id-mismatch", "case_id does not match its case"),
    ("show-negative-batch", "batch must be a positive integer"),
    ("show-negative-peaks", "not a positive rate"),
    ("show-gz", "not UTF-8 text"),
    ("report-ab-damaged", "leaves out damaged results"),
    ("explain-gzip", "left out"),
    ("explain-fifo", "not a regular file"),
    ("cost-stride-overflow", "exceeds the input size"),
    ("explain-dilation-overflow", "exceeds the input size"),
    ("grid-stride-overflow", "stride"),
    ("ab-budget-nan", "not a finite number"),
    ("ab-target-nan", "not a finite number"),
    ("run-preset-empty", "'--preset': an empty name"),
    ("run-out-empty", "an empty path"),
    ("model-out-empty", "an empty path"),
    ("ab-out-empty", "an empty path"),
    ("report-out-a-file", "is a file"),
    ("merge-out-a-file", "is a file"),
    ("crosscheck-csv-under-a-file", "no directory"),
    ("timercheck-csv-missing-folder", "no directory"),
    ("timercheck-csv-a-folder", "is a directory"),
    ("run-resume-fifo", "nothing to resume"),
    ("model-resume-fifo", "nothing to resume"),
    ("run-shard-empty", "--shard must look like K/N"),
    ("grid-bool-channels", "not a boolean"),
    ("grid-number-flag", "not a number"),
    ("grid-bool-rounds", "not a boolean"),
    ("grid-empty-variant", "at least 1 character"),
    ("grid-million", "axis combinations"),
    ("ab-py-empty", "does not run as a Python interpreter"),
    ("ab-py-no-prefix", "does not run as a Python interpreter"),
    ("ab-no-cases", "no valid case to compare"),
    ("crosscheck-asv-truncated", "not a readable asv results file"),
    ("crosscheck-asv-results-string", "not a asv results file this sepbench reads"),
    ("report-pb-truncated", "not a readable pytest-benchmark results file"),
    ("crosscheck-tolerance-nan", "not a finite number"),
    ("crosscheck-tolerance-negative", "--tolerance"),
])
def test_the_error_line_says_what_is_wrong(name: str, fragment: str, outcomes: dict[str, Outcome]) -> None:
    assert fragment in outcomes[name].stderr, outcomes[name].stderr


# ------------------------------------------------------------------------------------------------
# Classes that need more than one command or a crafted environment


def test_an_empty_shard_writes_a_file_that_says_so_and_merge_counts_it(tmp_path: Path) -> None:
    grid = _grid(tmp_path, "one", ONE_GEOMETRY)
    shards = [_run(["run", "--grid", grid, "--shard", f"{k}/2", "--out", str(tmp_path / "shards")], tmp_path)
              for k in (1, 2)]
    assert [s.code for s in shards] == [0, 0], [s.stderr for s in shards]
    assert "holds no valid case" in shards[1].stdout
    files = sorted((tmp_path / "shards").glob("*.jsonl"))
    assert len(files) == 2
    merged = _run(["merge", str(tmp_path / "shards"), "--out", str(tmp_path / "merged")], tmp_path)
    assert merged.code == 0, merged.stderr
    (out,) = (tmp_path / "merged").glob("*.jsonl")
    assert sum('"kind":"case"' in line for line in out.read_text().splitlines()) == 2


def test_two_runs_in_the_same_second_get_files_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone

    from sepbench import store
    from sepbench.records import RunHeader

    frozen = datetime(2026, 1, 1, tzinfo=timezone.utc)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return frozen

    monkeypatch.setattr(store, "datetime", Frozen)
    header = RunHeader(run_id="x", grid_name="g", grid_digest="d", grid={}, started="s",
                       environment={"device": "cpu", "machine": "m", "torch": "t"}, peaks={})
    paths = [store.ResultsFile.create(tmp_path, header).path for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.read_text().startswith('{"kind":"run"') for p in paths)


def _limited(args: list[str], cwd: Path, max_bytes: int) -> subprocess.CompletedProcess:
    """The CLI as if the disk filled up after `max_bytes` of any one file: writes past it fail (EFBIG)."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run([sys.executable, "-m", "sepbench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, preexec_fn=limit, env={**os.environ, "COLUMNS": "200"})


def test_report_and_merge_on_a_full_disk_leave_nothing_half_written(world: Path, tmp_path: Path) -> None:
    page = tmp_path / "page"
    done = _limited(["report", str(world / "good"), "--out", str(page)], tmp_path, 20_000)
    assert done.returncode == 2 and done.stderr.strip().startswith("sepbench: error: cannot write the report"), \
        done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not [p for p in page.rglob("*") if not p.is_dir()], list(page.rglob("*"))
    merged = tmp_path / "merged"
    done = _limited(["merge", str(world / "good"), "--out", str(merged)], tmp_path, 3_000)
    assert done.returncode == 2 and "cannot write results file" in done.stderr, done.stderr[-2000:]
    assert not list(merged.glob("*.jsonl"))


def test_an_interpreter_that_hangs_is_killed_with_its_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sepbench.ab import driver
    from sepbench.errors import SepbenchError

    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setattr(driver, "PROBE_TIMEOUT_S", 1.0)
    started = time.perf_counter()
    with pytest.raises(SepbenchError, match="no answer within"):
        driver.interpreter(str(fake))
    assert time.perf_counter() - started < 10
    child = int(pidfile.read_text())
    deadline = time.time() + 5
    def alive() -> bool:
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(child).status() != psutil.STATUS_ZOMBIE
        return False

    while alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not alive()


def _gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["dies at once", "hangs"])
def test_a_worker_that_lies_leaves_no_child_behind(tmp_path: Path, how: str) -> None:
    """An "interpreter" that starts a child and then dies (or hangs) as a worker: closing the worker takes the
    child with it, whether the worker itself is still there or not."""
    from sepbench.ab import driver

    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "python"
    end = "exit 3" if how == "dies at once" else "wait"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\n{end}\n")
    fake.chmod(0o755)
    worker = driver.Worker("A1", driver.Interpreter(str(fake), fake, str(tmp_path)))
    deadline = time.time() + 10
    while not pidfile.is_file() or not pidfile.read_text().strip():
        assert time.time() < deadline
        time.sleep(0.05)
    if how == "dies at once":
        worker.proc.wait(timeout=10)
    else:
        worker.stdin.close()  # the "bye" cannot be sent: close kills it
    worker.close()
    assert _gone(int(pidfile.read_text()))


def test_an_unexpected_fault_is_one_line_exit_3_and_a_traceback_file(tmp_path: Path) -> None:
    """The boundary for what no validation foresaw: never a traceback on the terminal, always the file."""
    code = ("import sys; import sepbench.cli as c; import sepbench.grid as g\n"
            "def boom(*a, **k): raise ZeroDivisionError('planted')\n"
            "g.load_preset = boom\n"
            "sys.argv = ['sepbench', 'run', '--dry-run']\n"
            "c.main()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("sepbench: internal error: ZeroDivisionError: planted (traceback in ")
    path = Path(line.split("traceback in ")[1].split(")")[0])
    assert "Traceback" in path.read_text() and "planted" in path.read_text()

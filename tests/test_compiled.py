"""`torch.compile` as an axis, on tiny shapes: compilation timed apart and never inside a timed block, a
recompilation while timed counted, a compiler that is missing one line per case while the rest of the grid goes
on, eager and compiled of one geometry timed in the same rounds, ids and digests of eager grids unchanged,
an `ab` worker compiling into its side's own cache, and the comparison's compile times."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import committed
from sepbench.case import Case
from sepbench.measure import compiled
from sepbench.measure.timer import measure_interleaved
from sepbench.store import read_run

TINY = ["--axis", "variants=standard,depthwise_separable", "--axis", "c_in=8", "--axis", "size=8",
        "--axis", "mode=inference", "--axis", "act=bn-relu", "--axis", "compile=eager,inductor"]


def _run(out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sepbench", "run", "--preset", "smoke", *TINY, "--out", str(out),
                           "--budget", "0.3", "--no-profile", "--no-memory", *extra], capture_output=True, text=True,
                          timeout=400, env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    done = _run(out)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("*.jsonl")
    return path


def test_compilation_is_recorded_apart_and_never_inside_a_block(compiled_run: Path) -> None:
    run = read_run(compiled_run)
    assert run.header is not None and run.header.compile_cache is not None
    assert Path(run.header.compile_cache["folder"]) == compiled_run.parent / ".compile-cache"
    assert run.header.compile_cache["state"] == "empty"
    assert any((compiled_run.parent / ".compile-cache").iterdir())  # the run's own cache, not the user's
    assert run.header.environment["inductor"]["cxx"]  # the settings that matter are in the fingerprint
    made = [r for r in run.records if r.case.compiled]
    assert len(made) == 2 and all(r.status == "ok" for r in made)
    for r in made:
        assert r.compilation is not None and r.compilation.cache == "cold" and r.compilation.cached_s is not None
        assert r.timing is not None and r.timing.recompiled == 0
        # A block holding the compilation would last at least as long as it did.
        assert max(t * r.timing.number for t in r.timing.times_s) < r.compilation.first_s
    assert all(r.compilation is None for r in run.records if not r.case.compiled)


def test_eager_and_compiled_are_timed_in_the_same_rounds(compiled_run: Path) -> None:
    run = read_run(compiled_run)
    by_id = {r.case_id: r for r in run.records}
    for r in run.records:
        if not r.case.compiled:
            continue
        twin = by_id[replace(r.case, compile="eager").id]
        assert r.timing is not None and twin.timing is not None
        assert r.timing.sittings == twin.timing.sittings and len(r.timing.times_s) == len(twin.timing.times_s)
        assert r.vs_eager is not None and r.vs_eager.low is not None and r.vs_eager.high is not None
        assert r.vs_eager.low <= r.vs_eager.ratio <= r.vs_eager.high
        if r.case.variant != "standard":  # each against its own baseline: compiled against compiled
            assert r.realized is not None and by_id[r.case.baseline().id].case.compile == r.case.compile


def test_the_report_sets_eager_and_compiled_side_by_side(compiled_run: Path, tmp_path: Path) -> None:
    from sepbench.report import analysis
    from sepbench.store import load

    df = analysis.prepare(load([compiled_run])[0])
    table = analysis.compiled(df)
    assert set(table["label"]) == {"standard", "depthwise_separable"}
    row = table[table["label"] == "depthwise_separable"].iloc[0]
    assert row["eager"] > 0 and row["compiled"] > 0 and row["cases"] == 1
    (sentence,) = analysis.compile_finding(table)
    assert "compiling" in sentence and ("changes the answer" in sentence or "leaves the answer" in sentence)


def test_a_recompilation_while_timed_is_counted() -> None:
    step = compiled.compile_module(torch.nn.Conv2d(2, 2, 1), "inductor")
    usual, other = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 5, 5)  # static shapes: a new one compiles anew
    calls = itertools.count()

    def fn() -> None:
        # Three warm-up calls, then one block of 5 calls a round: the new shape arrives in the third round.
        with torch.no_grad():
            step(other if next(calls) == 13 else usual)

    log = measure_interleaved({"a": fn}, lambda: None, min_run_time=0.0, min_rounds=4, max_rounds=4,
                              block_time=1.0, warmup_time=1e-9, numbers={"a": 5}, probe=False)["a"].log
    assert log is not None and log.recompiled == 1


def test_a_missing_compiler_skips_the_compiled_cases_and_measures_the_rest(tmp_path: Path) -> None:
    done = _run(tmp_path, env={"CXX": str(tmp_path / "no-such-g++")})
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.glob("*.jsonl")
    run = read_run(path)
    made = [r for r in run.records if r.case.compiled]
    assert made and all(r.status == "skipped" for r in made)
    for r in made:
        assert r.reason is not None and r.reason.startswith("no C++ compiler for inductor (")
        assert "\n" not in r.reason and "TORCHDYNAMO_VERBOSE" not in r.reason
    assert all(r.status == "ok" for r in run.records if not r.case.compiled)


def test_eager_ids_and_grid_digests_are_those_of_the_committed_runs() -> None:
    from pydantic import ValidationError

    from sepbench.grid import Grid, GridFile

    checked = 0
    for path in committed("trust/default-*.jsonl"):  # runs of the grid schema of today, bar the new axis
        lines = path.read_text().splitlines()
        header = json.loads(lines[0])
        if header.get("kind") != "run":
            continue
        try:
            spec = GridFile.model_validate(header["grid"])
        except ValidationError:
            continue  # a grid of settings since retired
        assert Grid(header["grid_name"], spec).digest() == header["grid_digest"], path.name
        for line in lines[1:3]:
            record = json.loads(line)
            if record.get("kind") == "case":
                assert Case(**record["case"]).id == record["case_id"], path.name
        checked += 1
    assert checked >= 5
    assert "compile" not in Case("standard").id and "compile=inductor" in Case("standard", compile="inductor").id


def test_an_ab_worker_compiles_into_its_sides_cache_outside_every_block(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker told its side's cache compiles a compiled case there when it first builds it, says how long
    that took and from what cache; a second build of the case reuses the compiled code."""
    import io

    from sepbench.ab.worker import serve

    cache = tmp_path / ".compile-cache" / "A"
    for name in compiled.CACHE_VARIABLES:  # the worker sets them: put back what the tests had afterwards
        monkeypatch.setenv(name, str(tmp_path / "unused"))
    case = {"variant": "standard", "c_in": 8, "c_out": 8, "size": 8, "act": "bn-relu", "compile": "inductor"}
    requests = [{"op": "hello", "device": "cpu", "threads": 1, "core": None, "inject": 0.0,
                 "compile_cache": str(cache)},
                {"op": "prepare", "case": case, "block_time": 0.002, "warmup_time": 0.001},
                {"op": "block", "number": 5},
                {"op": "prepare", "case": case, "block_time": 0.002, "warmup_time": 0.001}, {"op": "bye"}]
    out = io.BytesIO()
    serve(io.BytesIO("".join(json.dumps(r) + "\n" for r in requests).encode()), out)
    hello, first, block, again, _ = (json.loads(line) for line in out.getvalue().decode().splitlines())
    assert hello["ok"] and hello["fingerprint"]["inductor"]["cxx"]
    assert first["ok"] and first["compile_cache"] in ("cold", "cached", "partly cached")
    assert block["per_call_s"] * 5 < first["compile_s"]  # the compilation is not in the block
    assert again["compile_s"] < first["compile_s"] / 5  # the same code, not a second compilation
    assert any(cache.iterdir())


def test_the_comparison_states_each_sides_compile_times() -> None:
    from sepbench.ab.stats import compile_times
    from sepbench.records import ABCaseRecord
    from sepbench.report.tables import compile_line

    def line(channels: int, a: list[float], b: list[float], a_first: str = "cold") -> ABCaseRecord:
        c = Case("standard", c_in=channels, c_out=channels, compile="inductor")
        return ABCaseRecord(ab_id="x", case_id=c.id, case=c, status="ok", a_s=[1.0], b_s=[1.0], compile_a_s=a,
                            compile_b_s=b, compile_cache={"A": [a_first] + ["cached"] * (len(a) - 1),
                                                          "B": ["cold"] + ["cached"] * (len(b) - 1)},
                            finished="now")

    times = compile_times([line(8, [4.0, 1.0, 1.2], [6.0, 1.5, 1.3]), line(16, [2.0, 0.5], [2.0, 0.7])])
    assert times is not None and times.cases == 2 and times.a_cold == times.b_cold == 2
    assert times.a_first == 3.0 and times.b_first == 4.0 and times.ratio == pytest.approx((1.5 + 1.0) / 2)
    assert times.a_cached == 1.0 and times.b_cached == 1.3
    assert compile_line(times) == ("compilation (2 compiled cases, median per case): A first worker 3.00 s (cold in 2 "
                                   "of 2), later workers 1.00 s; B first worker 4.00 s (cold in 2 of 2), later workers "
                                   "1.30 s; B / A first ×1.25")
    warm = compile_times([line(8, [0.1, 0.1], [2.0, 0.1], a_first="cached")])
    assert warm is not None and warm.a_cold == 0 and compile_line(warm).endswith(
        "not like for like: a side's cache held graphs before its first worker compiled")
    assert compile_times([ABCaseRecord(ab_id="x", case_id=Case("standard").id, case=Case("standard"), status="ok",
                                       finished="now")]) is None

"""Durable writes, damaged files, merging, and a run killed with SIGKILL then resumed."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from conftest import committed, requires_cuda, sepbench, tiny_grid
from sepbench.errors import SepbenchError
from sepbench.grid import load_grid
from sepbench.measure import between
from sepbench.measure.runner import Runner, plan
from sepbench.store import load, read_run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete run of the tiny grid (8 cases), memory probes included."""
    d = tmp_path_factory.mktemp("run")
    grid = load_grid(tiny_grid(d / "tiny.toml", memory=True))
    return Runner(grid, d / "results").run().path


def test_a_run_writes_a_header_and_one_valid_record_per_case(finished_run: Path) -> None:
    run = read_run(finished_run)
    assert run.problems == []
    assert run.header is not None and run.header.environment["torch"]
    assert run.header.peaks["cpu"]["flops"]["float32"] > 0
    ids = [r.case_id for r in run.records]
    assert len(ids) == 8 == len(set(ids))
    standard = [r for r in run.records if r.case.variant == "standard"]
    others = [r for r in run.records if r.case.variant != "standard"]
    assert all(r.realized is None for r in standard)
    assert all(r.realized is not None and r.realized.efficiency > 0 for r in others)
    assert all(r.memory and r.memory.cpu_rss_rise_bytes is not None and r.memory.cpu_method for r in run.records)
    assert all(r.timing and len(r.timing.times_s) >= 3 and r.timing.threads == 1 for r in run.records)


def test_each_speedup_is_re_derived_from_its_sittings(finished_run: Path) -> None:
    """The record holds what its speedup is made of: every block time and the rounds of each sitting.
    The speedup is the median of the sittings' median ratios, its interval the order statistics that a
    binomial test on the median allows (scipy's quantile_test), widened by the between-run τ it records."""
    run = read_run(finished_run)
    times = {r.case_id: r.timing.times_s for r in run.records if r.timing is not None}
    for r in run.records:
        if r.realized is None:
            continue
        assert r.timing is not None and r.timing.sittings and len(r.timing.sittings) >= 2
        assert sum(r.timing.sittings) == len(r.timing.times_s) == len(times[r.group_id])
        edges = np.cumsum([0, *r.timing.sittings])
        base, mine = np.asarray(times[r.group_id]), np.asarray(r.timing.times_s)
        logs = np.log([np.median(base[i:j]) / np.median(mine[i:j]) for i, j in itertools.pairwise(edges)])
        assert r.realized.estimator == "median"
        assert r.realized.speedup == pytest.approx(np.exp(np.median(logs)), rel=1e-12)
        ci = stats.quantile_test(logs, q=np.median(logs), p=0.5).confidence_interval(0.95)
        tau, m = r.realized.between_run, np.median(logs)
        assert tau is not None and tau > 0  # every interval holds the between-run part, in quadrature
        assert np.log(r.realized.low) == pytest.approx(m - np.hypot(m - ci.low, between.Z95 * tau), rel=1e-12)
        assert np.log(r.realized.high) == pytest.approx(m + np.hypot(ci.high - m, between.Z95 * tau), rel=1e-12)
        # taken back out, its ends are two of the sittings' own ratios
        w = between.within(r.realized.speedup, r.realized.low, r.realized.high, tau)
        ends = m - between.Z95 * w.se_low, m + between.Z95 * w.se_high
        assert all(np.isclose(end, logs).any() for end in ends)


def _as_run(path: Path, run_id: str) -> str:
    """The file's text as if it were another run (every line's run_id replaced)."""
    lines = path.read_text().splitlines()
    return "\n".join(json.dumps({**json.loads(line), "run_id": run_id}) for line in lines) + "\n"


def test_merge_loads_many_files_into_one_table(finished_run: Path, tmp_path: Path) -> None:
    (tmp_path / "other-run.jsonl").write_text(_as_run(finished_run, "other"))
    df, problems = load([finished_run, tmp_path])
    assert problems == [] and len(df) == 16 and df["run_id"].nunique() == 2
    expected = {"theory_speedup", "realized_speedup", "timing_median_s", "env_torch", "memory_cpu_rss_rise_bytes"}
    assert expected <= set(df)


def test_a_copy_of_a_results_file_is_refused_not_counted_twice(finished_run: Path, tmp_path: Path) -> None:
    (tmp_path / "backup.jsonl").write_bytes(finished_run.read_bytes())
    df, problems = load([finished_run, tmp_path])
    assert len(df) == 8 and df["case_id"].is_unique
    assert [p.message for p in problems] == [f"8 records repeat records already read from {finished_run} "
                                             "(same run and case): refused"]


def test_a_damaged_file_is_reported_by_path_and_line_and_the_rest_still_loads(finished_run: Path,
                                                                                tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(finished_run.read_bytes())
    lines = finished_run.read_text().splitlines()
    bad_record = json.loads(lines[2])
    bad_record["theory"]["macs"] = "many"
    damaged = tmp_path / "damaged.jsonl"
    other = _as_run(finished_run, "other").splitlines()  # another run, so no line repeats good.jsonl's
    bad_record["run_id"] = "other"
    damaged.write_text("\n".join([other[0], other[1], "{not json", json.dumps(bad_record), *other[3:]]) + "\n")
    df, problems = load([tmp_path])
    assert [(p.path.name, p.line) for p in problems] == [("damaged.jsonl", 3), ("damaged.jsonl", 4)]
    assert "not valid JSON" in problems[0].message
    assert "theory.macs" in problems[1].message
    assert len(df) == 8 + 7  # every good line of both files


def test_a_torn_last_line_is_noted_and_cut_before_resuming(finished_run: Path, tmp_path: Path) -> None:
    torn = tmp_path / "torn.jsonl"
    data = finished_run.read_bytes()
    torn.write_bytes(data + data.splitlines()[1][:40])
    run = read_run(torn)
    assert len(run.records) == 8 and len(run.problems) == 1 and run.problems[0].torn_tail
    from sepbench.store import ResultsFile

    assert ResultsFile(torn).repair_tail()
    assert torn.read_bytes() == data


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _default_sigint() -> None:
    """As in a terminal's foreground: a test runner started in the background (`cmd &` in a script)
    passes SIGINT on ignored, and Python then leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.process_env
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "ctrl-c"])
def test_a_run_killed_mid_way_then_resumed_measures_every_case_exactly_once(tmp_path: Path, signum: int) -> None:
    grid = tiny_grid(tmp_path / "tiny.toml", min_run_time=0.3, memory=True)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "sepbench", "run", "--grid", str(grid), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    results: list[Path] = []
    while time.monotonic() < deadline:  # wait until the header and some, but not all, cases are on disk
        results = list(out.glob("*.jsonl")) if out.exists() else []
        if results and _lines(results[0]) >= 3:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signum)  # the whole process group, as a terminal's Ctrl-C does
    _, stderr = proc.communicate(timeout=60)
    assert len(results) == 1
    killed_at = len(read_run(results[0]).records)
    assert 2 <= killed_at < 8, f"the kill should land mid-run (exit {proc.returncode}): {stderr[-300:]}"
    if signum == signal.SIGINT:
        assert proc.returncode == 130
        assert "Traceback" not in stderr
        assert f"interrupted: {killed_at} finished cases are saved in {results[0]}" in stderr
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert list(out.glob("*.jsonl")) == results  # appended to the same file
    run = read_run(results[0])
    assert [p for p in run.problems if not p.torn_tail] == []
    ids = [r.case_id for r in run.records]
    assert len(ids) == len(set(ids)) == 8
    assert set(ids) == {c.id for c in plan(load_grid(grid)).cases}


def test_resume_of_a_partial_group_remeasures_only_the_missing_cases(finished_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    partial = out / finished_run.name
    lines = finished_run.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:3] + lines[4:]))  # the third case of the first group is missing
    missing = json.loads(lines[3])["case_id"]
    grid = load_grid(tiny_grid(tmp_path / "tiny.toml", memory=True))
    outcome = Runner(grid, out, resume=True).run()
    assert [r.case_id for r in outcome.records] == [missing]
    assert outcome.already_done == 7
    ids = [r.case_id for r in read_run(partial).records]
    assert len(ids) == len(set(ids)) == 8
    resumed = next(r for r in read_run(partial).records if r.case_id == missing)
    assert resumed.realized is not None  # its baseline was timed again beside it, not written twice


def test_sittings_are_spread_over_the_run_and_an_interrupt_keeps_them(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes over the grid: each group's sittings alternate with the other group's, every sitting is
    journaled, and a run interrupted before any group is recorded resumes from its journal, taking only
    the sittings it lacked; the journal is gone once the run ends."""
    from sepbench.measure import runner as runner_module
    from sepbench.store import SittingJournal

    taken: list[str] = []
    in_process = runner_module.sitting.in_process

    def counted(cases, *args, **kwargs):
        sit = in_process(cases, *args, **kwargs)

        def counting(*a, **k):
            if len(taken) == 5:
                raise KeyboardInterrupt  # mid-run: 2 groups × 6 sittings, none recorded yet
            taken.append(cases[0].group_id)
            return sit(*a, **k)
        return counting

    monkeypatch.setattr(runner_module.sitting, "in_process", counted)
    grid = load_grid(tiny_grid(tmp_path / "tiny.toml"))
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        Runner(grid, out).run()
    (path,) = out.glob("*.jsonl")
    run = read_run(path)
    assert run.records == [] and run.header is not None
    journaled = SittingJournal(path).read(run.header.run_id)
    assert [s.group_id for s in journaled] == taken == [taken[0], taken[1]] * 2 + [taken[0]]
    assert taken[0] != taken[1]
    taken.append("resumed")
    outcome = Runner(grid, out, resume=True).run()
    assert len(outcome.records) == 8 and not SittingJournal(path).path.exists()
    resumed = taken[taken.index("resumed") + 1:]
    for g in {r.group_id for r in outcome.records}:
        record = next(r for r in outcome.records if r.group_id == g and r.timing is not None)
        sittings = record.timing.sittings or []
        assert len(sittings) == taken[:5].count(g) + resumed.count(g) >= 6
        assert resumed.count(g) < len(sittings)  # the journaled ones counted, not taken again


@pytest.mark.parametrize(("target", "budget_s", "stop"), [(1.0, 3600.0, "target"), (1e-6, 1e-3, "budget")])
def test_every_group_takes_its_first_sittings_then_stops_at_the_target_or_the_budget(
        tmp_path: Path, target: float, budget_s: float, stop: str) -> None:
    """A ±100 % target is met by the first sittings; a ±0.0001 % one never is, and a budget spent before
    the first pass ends stops every group once its first sittings are taken, flagged unstable."""
    grid = load_grid(tiny_grid(tmp_path / "tiny.toml"))
    measure = grid.measure.model_copy(update={"target": target, "budget_s": budget_s})
    grid = type(grid)(grid.name, grid.spec.model_copy(update={"measure": measure}))
    run = read_run(Runner(grid, tmp_path / "out", profile=False).run().path)
    assert len(run.records) == 8
    for r in run.records:
        assert r.timing is not None and r.timing.stop == stop
        assert r.timing.sittings == [measure.sitting_rounds] * measure.min_sittings
        if r.realized is not None:
            assert r.realized.unstable == (stop == "budget")
            assert (r.realized.reason is not None) == (stop == "budget")


def test_resume_refuses_when_there_is_nothing_to_resume(tmp_path: Path) -> None:
    grid = load_grid(tiny_grid(tmp_path / "tiny.toml"))
    with pytest.raises(SepbenchError, match="nothing to resume"):
        Runner(grid, tmp_path / "empty", resume=True).open()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_cuda)])
def test_an_absurd_batch_is_recorded_as_skipped_and_the_run_goes_on(tmp_path: Path, device: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """What the plan's memory bound admits can still fail to allocate (memory shared with others): the
    build's out-of-memory is caught. The bound is lifted here so that the build is what refuses."""
    from sepbench.grid import parse_grid

    monkeypatch.setattr("sepbench.measure.runner.device_memory", lambda device: 2**60)

    grid = parse_grid(
        f"""
        [grid]
        variants = ["standard", "depthwise"]
        c_in = [8]
        size = [1024]
        batch = [100000, 1]
        device = ["{device}"]
        [measure]
        min_run_time = 0.01
        min_rounds = 3
        memory = false
        """, "oom", "test",
    )
    run = read_run(Runner(grid, tmp_path).run().path)
    status = {(r.case.batch, r.case.variant): (r.status, r.reason) for r in run.records}
    assert status[(100000, "standard")] == ("skipped", "out of memory while building")
    assert status[(100000, "depthwise")] == ("skipped", "out of memory while building")
    assert status[(1, "standard")][0] == status[(1, "depthwise")][0] == "ok"


def test_a_case_larger_than_the_machine_is_dropped_with_the_memory_named(tmp_path: Path) -> None:
    from sepbench.grid import parse_grid
    from sepbench.measure.runner import device_memory, plan

    grid = parse_grid('[grid]\nvariants = ["depthwise"]\nc_in = [8]\nsize = [1024]\nbatch = [100000, 1]\n', "big", "t")
    planned = plan(grid)
    assert {c.batch for c in planned.cases} == {1}
    (reason, n), = planned.dropped.items()
    assert n == 2 and f"{device_memory('cpu') / 2**30:,.1f} GiB" in reason and "this machine" in reason


def test_a_second_writer_of_a_results_file_is_refused_and_adds_nothing(finished_run: Path, tmp_path: Path) -> None:
    """While one run holds its results file, a `--resume` of the same run stops with one line."""
    from sepbench.store import ResultsFile

    out = tmp_path / "results"
    out.mkdir()
    held = out / finished_run.name
    held.write_bytes(finished_run.read_bytes()[: finished_run.read_bytes().rfind(b"\n", 0, -1) + 1])  # one case short
    grid = tiny_grid(tmp_path / "tiny.toml", memory=True)  # the grid of finished_run, so --resume finds it
    writer = ResultsFile(held)
    writer.lock()
    try:
        before = held.read_bytes()
        second = sepbench("run", "--grid", grid, "--out", out, "--resume")
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1] == (
            f"sepbench: error: results file {held} is being written by another sepbench run; wait for it to end, "
            "or measure into another --out")
        assert held.read_bytes() == before
    finally:
        writer.unlock()
    third = sepbench("run", "--grid", grid, "--out", out, "--resume")
    assert third.returncode == 0, third.stderr
    ids = [r.case_id for r in read_run(held).records]
    assert len(ids) == len(set(ids)) == 8


def test_a_run_that_fails_before_any_case_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write error (a full disk, say) after the header: one error, and no header-only file left."""
    from sepbench.store import ResultsFile

    grid = load_grid(tiny_grid(tmp_path / "tiny.toml"))
    runner = Runner(grid, tmp_path / "out")
    opened = runner.open()
    header_only = opened.results.path
    assert header_only.exists()

    def full(self: ResultsFile, record: object) -> None:
        raise SepbenchError(f"cannot write results file {self.path}: No space left on device")

    monkeypatch.setattr(ResultsFile, "append", full)
    with pytest.raises(SepbenchError, match="No space left on device"):
        runner.run(opened)
    assert not header_only.exists()


def test_results_files_from_before_the_contention_check_still_load() -> None:
    """Runs written before blocks were checked have no probe, retakes, target or end line: they load as
    they are, and read as runs whose machine condition is unknown."""
    (old,) = committed("default-cpu-vm-torch2.13.0+cpu-20261123T204719Z.jsonl")
    run = read_run(old)
    assert run.problems == [] and run.end is None and len(run.records) == 216
    assert run.header is not None and run.header.machine_start is None
    df, problems = load([old])
    assert problems == [] and len(df) == 216
    assert df["run_retaken_share"].isna().all() and not df["run_contended"].any()
    assert df["timing_retaken"].isna().all()


def test_a_finished_run_ends_with_the_machine_it_ran_on(tmp_path: Path) -> None:
    grid = tiny_grid(tmp_path / "tiny.toml")
    done = sepbench("run", "--grid", grid, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    (path,) = (tmp_path / "out").glob("*.jsonl")
    run = read_run(path)
    assert run.header is not None and run.header.machine_start is not None
    assert "other_cores" in run.header.machine_start and run.header.thread_policy == "1 asked for"
    assert run.end is not None and run.end.run_id == run.header.run_id and "other_cores" in run.end.machine_end
    groups = {r.group_id: r.timing for r in run.records if r.timing is not None}
    retaken = sum(sum((t.retaken or {}).values()) for t in groups.values())
    assert run.end.retaken_share == pytest.approx(retaken / sum(t.blocks or 0 for t in groups.values()))
    for r in run.records:
        assert r.timing is not None and r.timing.stop in {"target", "budget", "rounds"}
        assert r.timing.probe_s and r.timing.blocks and r.timing.retaken is not None
        if r.realized is not None:
            target = run.header.grid["measure"]["target"]
            assert r.realized.unstable == (r.realized.half_width is None or r.realized.half_width > target)
            assert (r.realized.reason is not None) == r.realized.unstable
    assert "machine: 1 asked for; other work on" in done.stdout

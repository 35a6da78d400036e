"""`sepbench ab`: the paired statistics on synthetic rounds, and the command with real workers: a worker
that dies mid-comparison, kill -9 and --resume, and bad input."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import committed, sepbench, tiny_grid
from sepbench.ab.stats import case_table, comparison, paired, summarize, verdicts
from sepbench.case import Case
from sepbench.measure import between
from sepbench.records import ABCaseRecord, ABControl
from sepbench.report.tables import control_line
from sepbench.store import read_ab

PYTHON = sys.executable
FAST = ["--budget", "0.2", "--block-ms", "2", "--target", "50", "--workers", "2"]


# The blocks' noise as a VM gives it: on the committed A/A comparison
# (results/ab/aa-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-20261123T141815Z.jsonl) a round's
# log ratio, about its pair's median, has a robust SD of 2.5 % but an SD of 6.1 %, kurtosis 16, and
# 12 % of rounds beyond 3 robust SDs: a steady jitter, and bursts (steal time) that hit one block.
JITTER, BURST_SHARE, BURST_MEAN = 0.025, 0.10, 0.15


def _blocks(rng: np.random.Generator, n: int, bursts: bool) -> np.ndarray:
    noise = rng.lognormal(0, JITTER, n)
    if bursts:
        noise *= 1 + rng.exponential(BURST_MEAN, n) * (rng.random(n) < BURST_SHARE)
    return noise


def _synthetic(cases: int, shift: float, seed: int, instance_sd: float = 0.0, by_instance: bool = True,
               instances: int = 8, rounds: int = 5, bursts: bool = True) -> pd.DataFrame:
    """Rounds of A and B with the VM's block noise (above); B = A × shift; both sides of a round slowed
    together by up to 2× over the comparison, as whole runs drift on this machine; and each build
    (instance) of a case on each side with a lasting speed of its own, of spread `instance_sd`."""
    rng = np.random.default_rng(seed)
    rows = []
    n = instances * rounds
    for c in range(cases):
        base = rng.uniform(1e-4, 1e-2)
        machine = np.linspace(1, 2, n) * rng.lognormal(0, 0.2, n)
        build_a = np.repeat(rng.lognormal(0, instance_sd, instances), rounds)
        build_b = np.repeat(rng.lognormal(0, instance_sd, instances), rounds)
        a = base * machine * build_a * _blocks(rng, n, bursts)
        b = base * shift * machine * build_b * _blocks(rng, n, bursts)
        est = paired(a, b, list(np.repeat(np.arange(instances), rounds)) if by_instance else None)
        rows.append({"case_id": f"c{c}", "ratio": est.ratio, "low": est.low, "high": est.high, "p": est.p,
                     "mdc": est.mdc, "rounds": est.rounds})
    return verdicts(pd.DataFrame(rows))


def test_a_synthetic_aa_flags_nothing() -> None:
    table = _synthetic(216, 1.0, seed=1)
    assert summarize(table).flagged == 0
    assert summarize(table).median_mdc < 0.03  # 2.5 % jitter and bursts, 40 rounds in 8 pairs: about ±2 %


def test_a_synthetic_five_percent_slowdown_is_found_in_nearly_every_case() -> None:
    table = _synthetic(216, 1.05, seed=2)
    s = summarize(table)
    assert s.b_slower >= 0.95 * 216 and s.b_faster == 0
    assert 1.045 < s.median_ratio < 1.055


def test_a_pairs_median_resists_the_bursts_a_mean_does_not() -> None:
    """On the VM's noise the same rounds give a narrower interval through each pair's median than through
    its mean, and the median finds more of a 5 % slowdown: why a pair's figure is its median."""
    rng = np.random.default_rng(6)
    by_median, by_mean = [], []
    for _ in range(200):
        a, b = _blocks(rng, 40, bursts=True), 1.05 * _blocks(rng, 40, bursts=True)
        d = np.log(b / a).reshape(8, 5)
        by_median.append(paired(a, b, list(np.repeat(np.arange(8), 5))))
        by_mean.append(stats.ttest_1samp(d.mean(axis=1), 0.0))
    widths = np.array([est.half_width for est in by_median])
    mean_widths = np.array([(lambda ci: (ci.high - ci.low) / 2)(t.confidence_interval(0.95)) for t in by_mean])
    assert np.median(widths) < 0.8 * np.median(mean_widths)
    assert sum(est.p < 0.05 for est in by_median) > sum(t.pvalue < 0.05 for t in by_mean)


def test_builds_with_a_speed_of_their_own_are_the_unit_not_the_rounds() -> None:
    """Each build lasting 3 % off (SD) on its side: rounds taken as independent flag many cases of an A/A;
    instance pairs as the unit flag none, and still find a 5 % slowdown in most cases."""
    naive = _synthetic(216, 1.0, seed=4, instance_sd=0.03, by_instance=False, bursts=False)
    grouped = _synthetic(216, 1.0, seed=4, instance_sd=0.03, bursts=False)
    assert summarize(naive).flagged > 20
    assert summarize(grouped).flagged == 0
    slower = summarize(_synthetic(216, 1.05, seed=5, instance_sd=0.03, instances=16, bursts=False))
    assert slower.b_slower >= 0.8 * 216 and slower.b_faster == 0


def test_drift_that_hits_both_workers_is_cancelled() -> None:
    """The same rounds with and without a 2× drift (and 20 % round-to-round swings) common to both
    sides give the same estimate, to rounding: pairing divides it out."""
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0, 0.03, 50), 1.02 * rng.lognormal(0, 0.03, 50)
    machine = np.linspace(1, 2, 50) * rng.lognormal(0, 0.2, 50)
    still, drifting = paired(a, b), paired(a * machine, b * machine)
    assert drifting.ratio == pytest.approx(still.ratio, rel=1e-12)
    assert (drifting.low, drifting.high) == pytest.approx((still.low, still.high), rel=1e-9)
    unpaired_sd = np.std(np.log(b * machine)) / np.sqrt(50)  # what comparing the sides' means would face
    assert still.half_width < unpaired_sd


def test_interval_and_p_value_are_the_t_test_on_instance_means() -> None:
    from scipy import stats

    a, b = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.0]), np.array([1.1, 1.2, 1.0, 1.1, 1.0, 1.04])
    inst = [0, 0, 1, 1, 2, 2]
    m = np.log(b / a).reshape(3, 2).mean(axis=1)
    est = paired(a, b, inst)
    assert est.ratio == pytest.approx(np.exp(m.mean()))
    assert est.p == pytest.approx(stats.ttest_1samp(m, 0).pvalue)
    assert est.rounds == 6


def test_interval_and_p_value_are_the_t_test_on_log_ratios() -> None:
    from scipy import stats

    a, b = np.array([1.0, 1.1, 0.9, 1.05, 0.95]), np.array([1.1, 1.2, 1.0, 1.1, 1.0])
    d = np.log(b / a)
    est = paired(a, b)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert est.ratio == pytest.approx(np.exp(d.mean()))
    assert (est.low, est.high) == pytest.approx((np.exp(d.mean() - half), np.exp(d.mean() + half)))
    assert est.mdc == pytest.approx(np.expm1(half))
    assert est.p == pytest.approx(stats.ttest_1samp(d, 0).pvalue)


# --- protocol 2: balanced orders and the in-run control, on synthetic rounds ---------------------

CASE = Case(variant="pointwise", c_in=8, c_out=8, size=8)


def _rounds(rng: np.random.Generator, shift: float, side: float, position: float,
            pairs: int = 10, per_pair: int = 4) -> dict:
    """A visit's rounds as the driver takes them: half with A first, half with B first, per pair. The
    log ratio log(B/A) is the change, plus a side bias, plus `position` when B went second (minus it
    when B went first), plus a pair's own offset and the VM's block noise."""
    a_s, b_s, order, instance = [], [], "", []
    for k in range(pairs):
        offset = rng.normal(0, 0.004)
        firsts = list("AB" * (per_pair // 2))
        rng.shuffle(firsts)
        for first in firsts:
            a, b = 1e-3 * _blocks(rng, 2, bursts=True)
            d = np.log(shift) + side + offset + (position if first == "A" else -position)
            a_s.append(a)
            b_s.append(b * np.exp(d))
            order += first
            instance.append(k)
    return {"a_s": a_s, "b_s": b_s, "order": order, "instance": instance}


def _comparison(seed: int, shift: float = 1.0, side: float = 0.0, position: float = 0.0, cases: int = 216,
                control_share: float = 0.25) -> list[ABCaseRecord]:
    """A whole protocol-2 file's records: the real rounds, and on a share of the cases the control's
    (the same side bias and position effect, no change: what the machine does to itself)."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(cases):
        control = None
        if rng.random() < control_share:
            control = ABControl(side="A", **_rounds(rng, 1.0, side, position))
        records.append(ABCaseRecord(ab_id="x", case_id=CASE.id, case=CASE, status="ok",
                                    **_rounds(rng, shift, side, position), control=control, finished="now"))
    return records


def test_the_control_reads_no_bias_where_there_is_none_and_the_aa_flags_nothing() -> None:
    table, control = comparison(_comparison(seed=11), protocol=2)
    assert control is not None and 30 <= control.cases <= 80  # a quarter of 216, drawn
    assert control.flagged <= 1
    assert control.bias_low < 1 < control.bias_high
    assert abs(control.position - 1) < 0.005
    assert control.fake_change < 3  # the 95th percentile of |log ratio| on the VM's noise
    assert summarize(table).flagged == 0


def test_a_side_bias_is_caught_by_the_control_and_its_flags_withheld() -> None:
    """A machine that reads B 3 % slower with no change (the control too): BH flags many A/A cases,
    the control shows the bias, and the verdict withholds every flag that does not stand out of it."""
    records = _comparison(seed=12, side=np.log(1.03))
    naive = verdicts(comparison(records, protocol=2)[0].drop(columns=["q", "verdict"]))
    assert summarize(naive).flagged > 50  # read without the control, the bias passes for a regression
    table, control = comparison(records, protocol=2)
    assert control is not None and control.bias_low > 1.02
    s = summarize(table)
    assert s.flagged <= 1 and s.withheld > 50
    line = control_line(control, s)
    assert "bias 1.02" in line or "bias 1.03" in line
    assert f"{s.withheld} flags that do not stand out of the control's bias withheld" in line
    # A real 5 % change on top of a 1 % bias stands out of the control's interval, and is still flagged
    # in most cases (about ±2.8 % per case on this synthetic noise).
    table, control = comparison(_comparison(seed=13, shift=1.05, side=np.log(1.01)), protocol=2)
    s = summarize(table)
    assert s.b_slower >= 0.6 * 216 and s.b_faster == 0 and 1.05 < s.median_ratio < 1.07


def test_an_order_effect_is_measured_and_cancelled_by_the_balanced_rounds() -> None:
    """The second block of a round 2 % slower: the control and the cases read it as the position effect,
    and each pair's median over its balanced rounds cancels it (no flag, no shift), where the rounds with
    A first alone would read B 2 % slower. Modelling it (the mean of the two orders' medians) cancels it
    too, but with wider intervals: why protocol 2 designs it away."""
    records = _comparison(seed=14, position=np.log(1.02))
    table, control = comparison(records, protocol=2)
    assert control is not None and control.position == pytest.approx(1.02, abs=0.004)
    s = summarize(table)
    assert s.position == pytest.approx(1.02, abs=0.004)
    assert s.flagged == 0 and s.median_ratio == pytest.approx(1.0, abs=0.003)
    a_first = [paired([a for a, o in zip(r.a_s, r.order, strict=True) if o == "A"],
                      [b for b, o in zip(r.b_s, r.order, strict=True) if o == "A"]).ratio for r in records]
    assert np.median(a_first) == pytest.approx(1.02, abs=0.004)
    modelled = case_table(records, by_order=True)
    assert modelled["mdc"].median() > 1.2 * table["mdc"].median()


def test_a_files_p_values_are_tested_for_uniformity() -> None:
    """An A/A's case p-values should be uniform; a comparison whose intervals are too narrow is not."""
    assert summarize(comparison(_comparison(seed=15), protocol=2)[0]).ks_p > 0.05
    table = comparison(_comparison(seed=15, side=np.log(1.01)), protocol=1)[0]
    assert summarize(table).ks_p < 0.01


# --- the command, with real worker processes ---------------------------------------------------


def _dying_python(tmp_path: Path, at_case: int) -> Path:
    """An interpreter whose A/B worker dies (exit 3) at its first block of the N-th case; else the real one."""
    script = tmp_path / "dying-python"
    script.write_text(f"""#!/bin/sh
if [ "$2" = "-m" ] && [ "$3" = "sepbench.ab.worker" ]; then
  exec {PYTHON} -c '
import os, sys
import sepbench.ab.worker as w
prepare, block, seen = w._Session.prepare, w._Session.block, []
def counting(self, case, **kw):
    if case not in seen:
        seen.append(case)
    return prepare(self, case, **kw)
def dying(self, number):
    if len(seen) >= {at_case}:
        print("simulated crash", file=sys.stderr, flush=True)
        os._exit(3)
    return block(self, number)
w._Session.prepare, w._Session.block = counting, dying
w.main()
'
fi
exec {PYTHON} "$@"
""")
    script.chmod(0o755)
    return script


def _records(out: Path) -> list:
    (path,) = out.glob("*.jsonl")
    return read_ab(path).records


def test_a_worker_that_dies_mid_case_is_one_line_and_keeps_finished_cases(tmp_path: Path) -> None:
    grid = tiny_grid(tmp_path / "tiny.toml")
    dying = _dying_python(tmp_path, at_case=3)
    out = tmp_path / "out"
    done = sepbench("ab", "--aa", "--python", PYTHON, "--python", dying, "--grid", grid, "--out", out, *FAST)
    assert done.returncode == 3, done.stderr  # a fault at run time, not the input
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sepbench: failed: worker B") and "died during 'block' (exit 3): simulated crash" in last
    assert "finished cases are saved in" in last and "--resume" in last
    assert "Traceback" not in done.stderr
    finished = _records(out)
    assert len(finished) == 2
    # Cases long enough (a narrow target, half a minute for the six left) that a replacement pair, importing
    # torch on the spare core, is ready before the last of them: how fast FAST's cases end varies by VM.
    resumed = sepbench("ab", "--aa", "--python", PYTHON, "--grid", grid, "--out", out, "--resume", "--budget", "0.5",
                       "--block-ms", "2", "--target", "0.01", "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    ids = [r.case_id for r in _records(out)]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert [r.case_id for r in _records(out)][: len(finished)] == [r.case_id for r in finished]


def test_kill_9_then_resume_loses_no_finished_case_and_repeats_none(tmp_path: Path) -> None:
    grid = tiny_grid(tmp_path / "tiny.toml")
    out = tmp_path / "out"
    args = [PYTHON, "-m", "sepbench", "ab", "--aa", "--python", PYTHON, "--grid", str(grid), "--out", str(out),
            "--budget", "1", "--block-ms", "2", "--target", "0.01", "--workers", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        files = list(out.glob("*.jsonl")) if out.is_dir() else []
        if files and files[0].read_text().count('"kind":"ab_case"') >= 2:
            break
        time.sleep(0.1)
    # This comparison's workers (replacements included) are the parent's children; other comparisons
    # running on the machine are none of this test's business.
    ours = set(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split())
    assert len(ours) >= 4
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [r.case_id for r in _records(out)]
    assert 2 <= len(before) < 8
    for _ in range(150):  # the workers read end-of-file on their pipe and exit (torch's teardown takes a moment)
        workers = ours & set(subprocess.run(["pgrep", "-f", "sepbench.ab.worker"], capture_output=True,
                                            text=True).stdout.split())
        if not workers:
            break
        time.sleep(0.1)
    assert not workers, "workers outlived their parent"
    # Cases long enough (a narrow target, half a minute for the six left) that a replacement pair, importing
    # torch on the spare core, is ready before the last of them: how fast FAST's cases end varies by VM.
    resumed = sepbench("ab", "--aa", "--python", PYTHON, "--grid", grid, "--out", out, "--resume", "--budget", "0.5",
                       "--block-ms", "2", "--target", "0.01", "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr
    after = [r.case_id for r in _records(out)]
    assert after[: len(before)] == before and len(after) == 8 and len(set(after)) == 8
    # Pairs of workers were replaced along the way, in both sittings of the comparison.
    replaced = [r.replaced for r in _records(out)]
    assert max(replaced[: len(before)]) >= 1 and max(replaced[len(before):]) >= 1


def test_env_b_is_applied_to_b_only_and_recorded_with_the_control(tmp_path: Path) -> None:
    """One install under two settings: the variable reaches B's workers (their fingerprint says so) and
    not A's, the header records it, the file is named by it, and the control ran on every case."""
    grid = tiny_grid(tmp_path / "tiny.toml")
    out = tmp_path / "out"
    done = sepbench("ab", "--python", PYTHON, "--env-b", "OMP_SCHEDULE=static", "--control", "100", "--grid", grid,
                    "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("*.jsonl")
    assert "OMP_SCHEDULE_static" in path.name  # the store keeps file names to [A-Za-z0-9_.+-]
    ab = read_ab(path)
    h = ab.header
    assert h.protocol == 2 and not h.aa and h.a.env == {} and h.b.env == {"OMP_SCHEDULE": "static"}
    assert h.b.environment["settings"].get("OMP_SCHEDULE") == "static"
    assert "OMP_SCHEDULE" not in h.a.environment["settings"]
    for r in ab.records:
        assert r.control is not None and len(r.control.a_s) >= 4 and set(r.control.order) == {"A", "B"}
        assert r.number_a == r.number_b  # one calls-per-block for both sides
    assert "control (8 cases, one side against itself)" in done.stdout
    assert "with OMP_SCHEDULE=static" in done.stdout


def test_the_file_records_both_fingerprints_the_calibration_and_every_round(tmp_path: Path) -> None:
    grid = tiny_grid(tmp_path / "tiny.toml")
    out = tmp_path / "out"
    done = sepbench("ab", "--aa", "--inject", "5", "--control", "100", "--python", PYTHON, "--grid", grid, "--out", out,
                    *FAST)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("*.jsonl")
    assert "inject5pct" in path.name
    ab = read_ab(path)
    h = ab.header
    assert h.aa and h.inject == 0.05
    # No repeat of this comparison in --out: its intervals hold the committed A/A comparisons' τ, said so.
    assert h.between_run is not None and h.between_run["tau"] == between.AB_REFERENCE_TAU
    assert "A/A" in h.between_run["source"] and h.between_run["pairs"] == 0
    for side in (h.a, h.b):
        assert side.environment["torch"] and side.environment["onednn"] and side.environment["threads"] == 1
    for r in ab.records:
        assert r.status == "ok" and len(r.a_s) == len(r.b_s) == len(r.order) == len(r.instance) >= 6
        assert set(r.order) <= {"A", "B"} and set(r.instance) == {0, 1}  # every round names its worker pair
        assert r.retaken is not None and set(r.retaken) <= {"wait", "steal", "cpu"}  # the workers' detector ran
    assert "flagged at a 5 % false discovery rate" in done.stdout
    assert "intervals hold a between-run component τ = 0.00 %, the committed A/A comparisons'" in done.stdout
    # The report shows it first under "Across PyTorch versions", named as a calibration, with its file.
    (smoke,) = committed("smoke-cpu-vm-torch2.13.0+cpu-20261123T120618Z.jsonl")
    shutil.copy(smoke, out)
    built = sepbench("report", out, "--out", out / "report")
    assert built.returncode == 0, built.stderr
    html = (out / "report" / "index.html").read_text()
    versions = html.split('<section id="versions">', 1)[1]
    assert versions.index("Paired A/B comparisons") < versions.index("Run-to-run comparisons")
    assert "A/A + injected 5 %" in versions and path.name in versions
    # The in-run control stands beside the verdict: in the comparisons' table and under the plot.
    _, control = comparison(ab.records, h.protocol)
    assert control is not None and control.cases == 8
    assert f"{control.flagged} false flags in {control.cases}" in versions
    assert f"control ({control.cases} cases, one side against itself)" in versions


def test_a_case_one_side_cannot_run_is_said_case_by_case(tmp_path: Path) -> None:
    """A worker whose sepbench refuses a variant (as an older sepbench would) leaves that case missing on
    its side; the others are compared."""
    grid = tiny_grid(tmp_path / "tiny.toml")
    script = tmp_path / "older-python"
    script.write_text(f"""#!/bin/sh
if [ "$2" = "-m" ] && [ "$3" = "sepbench.ab.worker" ]; then
  exec {PYTHON} -c '
import sepbench.ab.worker as w
real = w._Session.prepare
def prepare(self, case, **kw):
    if case["variant"] == "pointwise":
        raise ValueError("unknown variant pointwise")
    return real(self, case, **kw)
w._Session.prepare = prepare
w.main()
'
fi
exec {PYTHON} "$@"
""")
    script.chmod(0o755)
    out = tmp_path / "out"
    done = sepbench("ab", "--aa", "--python", PYTHON, "--python", script, "--grid", grid, "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    status = {r.case.variant: r.status for r in _records(out)}
    assert status["pointwise"] == "missing_b" and status["standard"] == "ok"
    missing = [r for r in _records(out) if r.status == "missing_b"]
    assert all("unknown variant pointwise" in r.reason for r in missing)


@pytest.fixture(scope="module")
def bare_pythons(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A venv with neither torch nor sepbench, and one with a stand-in torch but no sepbench."""
    root = tmp_path_factory.mktemp("venvs")
    made = {}
    for name in ("bare", "torch-only"):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / name)], check=True)
        made[name] = root / name / "bin" / "python"
    site = subprocess.run([str(made["torch-only"]), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "torch").mkdir()
    (Path(site) / "torch" / "__init__.py").write_text("")
    return made


@pytest.mark.parametrize(("args", "message"), [
    (["--python", "/nonexistent/python", "--python", PYTHON], "--python /nonexistent/python: no Python interpreter"),
    (["--python", "{bare}", "--python", PYTHON], "torch is not installed in that interpreter"),
    (["--python", "{torch-only}", "--python", PYTHON], "sepbench is not installed in that interpreter"),
    (["--python", PYTHON, "--python", PYTHON], "are the same install"),
    (["--python", PYTHON, "--env-a", "X=1", "--env-b", "X=1"], "give two interpreters"),
    (["--python", PYTHON, "--python", PYTHON, "--env-a", "X=1", "--env-b", "X=1"], "under the same settings"),
    (["--aa", "--python", PYTHON, "--env-b", "X=1"], "give no --env-a/--env-b with it"),
    (["--python", PYTHON, "--env-b", "NOEQUALS"], "--env-b 'NOEQUALS': give KEY=VALUE"),
    (["--python", PYTHON, "--env-b", "1X=2"], "give KEY=VALUE"),
    (["--python", PYTHON, "--env-b", "X=1", "--env-b", "X=2"], "--env-b X is given twice"),
    (["--aa", "--python", PYTHON, "--control", "101"], "101.0 is not in the range"),
    (["--python", PYTHON], "give two interpreters"),
    (["--aa", "--python", PYTHON, "--inject", "150"], "150.0 is not in the range 0<=x<=100"),
    (["--aa", "--python", PYTHON, "--inject", "-1"], "-1.0 is not in the range 0<=x<=100"),
    (["--python", PYTHON, "--python", "{bare}", "--inject", "5"], "give it with --aa"),
    (["--aa", "--python", PYTHON, "--python", "{bare}"], "torch is not installed"),
    (["--aa", "--python", PYTHON, "--resume", "--out", "{empty}"], "nothing to resume"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, bare_pythons: dict[str, Path],
                                         tmp_path: Path) -> None:
    subs = {"{bare}": str(bare_pythons["bare"]), "{torch-only}": str(bare_pythons["torch-only"]),
            "{empty}": str(tmp_path)}
    done = sepbench("ab", *[subs.get(a, a) for a in args], "--preset", "smoke", "--budget", "0.1")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sepbench: error:") and message in lines[0], done.stderr
    assert not list(tmp_path.glob("*.jsonl"))


def test_a_worker_answers_each_block_with_its_contention_verdict() -> None:
    """The worker judges its own block with run's detector; the driver re-takes a round that lost the CPU."""
    import io

    from sepbench.ab.worker import serve

    requests = [{"op": "hello", "device": "cpu", "threads": 1, "core": None, "inject": 0.0},
                {"op": "prepare", "case": {"variant": "pointwise", "c_in": 8, "c_out": 8, "size": 8},
                 "block_time": 0.002, "warmup_time": 0.001},
                {"op": "block", "number": 5}, {"op": "bye"}]
    out = io.BytesIO()
    serve(io.BytesIO("".join(json.dumps(r) + "\n" for r in requests).encode()), out)
    block = json.loads(out.getvalue().decode().splitlines()[2])
    assert block["ok"] and block["per_call_s"] > 0
    assert block["contended"] in (None, "wait", "steal", "cpu")

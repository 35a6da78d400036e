"""Intervals about a re-run: the between-run component, the stopping rule's coverage, and the reasons an
interval stayed wide, each on synthetic data whose truth is known."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from sepbench.measure import between
from sepbench.measure.timer import RoundLog, diagnose
from sepbench.speedup import realized_speedup

ROOT = Path(__file__).resolve().parents[1]


def test_the_reference_tau_is_what_the_committed_runs_give() -> None:
    assert round(between.reference(ROOT), 4) == between.REFERENCE_TAU


def test_taking_the_between_run_part_out_gives_the_sittings_interval_back() -> None:
    centre, low, high = math.log(1.3), math.log(1.25), math.log(1.38)
    wide_low, wide_high = between.widen(centre, low, high, 0.008)
    assert wide_low < low and wide_high > high
    back = between.within(1.3, math.exp(wide_low), math.exp(wide_high), 0.008)
    assert back.se_low * between.Z95 == pytest.approx(centre - low)
    assert back.se_high * between.Z95 == pytest.approx(high - centre)


def _runs(tau: float, runs: int, cases: int = 400, seed: int = 0) -> list[dict[str, between.Estimate]]:
    """Runs of one grid on a machine whose runs differ by `tau` beyond their own intervals."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.3, 0.5, cases)
    se = rng.uniform(0.003, 0.01, cases)
    return [{f"c{i}": between.Estimate(float(truth[i] + rng.normal(0, tau) + rng.normal(0, se[i])), se[i], se[i])
             for i in range(cases)} for _ in range(runs)]


@pytest.mark.parametrize("tau", [0.0, 0.005, 0.012])
def test_tau_is_recovered_from_runs_that_differ_by_it(tau: float) -> None:
    found, pairs = between.estimate(_runs(tau, 3))
    assert pairs == 3
    assert found == pytest.approx(tau, abs=0.0015)


def test_with_tau_in_them_two_runs_agree_as_95_percent_intervals_should() -> None:
    a, b = _runs(0.008, 2, cases=2000, seed=1)
    z = np.array([(a[k].log_ratio - b[k].log_ratio) / math.hypot(math.hypot(a[k].se, 0.008), math.hypot(b[k].se, 0.008))
                  for k in a])
    naive = np.array([(a[k].log_ratio - b[k].log_ratio) / math.hypot(a[k].se, b[k].se) for k in a])
    assert 0.93 <= np.std(z) <= 1.07 and np.mean(np.abs(z) <= 1.96) >= 0.93
    assert np.std(naive) > 1.3  # without τ the same runs look a third too precise


def _with_host(src: Path, dest: Path, host: str) -> None:
    lines = src.read_text().splitlines()
    header = json.loads(lines[0])
    header["environment"]["host"] = host
    dest.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")


def test_a_run_takes_tau_from_this_hosts_earlier_runs_of_its_grid(tmp_path: Path) -> None:
    files = [ROOT / p for p in between.REFERENCE[:2]]
    header = json.loads(files[0].read_text().splitlines()[0])
    env = header["environment"]
    same = {"host": "h1", "torch": env["torch"], "device": env["device"], "threads": env["threads"]}
    assert between.for_run(tmp_path, header["grid_digest"], same).pairs == 0  # nothing yet: the reference
    _with_host(files[0], tmp_path / "a.jsonl", "h1")
    shutil.copy(files[1], tmp_path / "no-host.jsonl")  # no host recorded: not this host's
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    assert between.for_run(tmp_path, header["grid_digest"], same).tau == between.REFERENCE_TAU  # one is not a pair
    _with_host(files[1], tmp_path / "b.jsonl", "h1")
    _with_host(files[1], tmp_path / "c.jsonl", "h2")  # another host's run says nothing of this one
    found = between.for_run(tmp_path, header["grid_digest"], same)
    expected, _ = between.estimate([between.estimates(json.loads(line) for line in f.read_text().splitlines()[1:])
                                    for f in files])
    assert (found.pairs, found.tau) == (1, pytest.approx(expected)) and "this host" in found.source
    assert between.for_run(tmp_path, "other-grid", same).pairs == 0


def _sitting_times(logs: list[float], rounds: int = 2) -> tuple[list[float], list[float], list[int]]:
    """Block times whose sittings' median ratios are exp(logs)."""
    base = [1e-3] * (rounds * len(logs))
    var = [1e-3 / math.exp(x) for x in logs for _ in range(rounds)]
    return base, var, [rounds] * len(logs)


def test_stopping_at_the_target_keeps_the_interval_s_coverage() -> None:
    """The run's rule: from the sixth sitting on, stop the first time the interval (median, order
    statistics) is within ±target. Peeking after every sitting must not cost the interval its coverage:
    on heavy-tailed sittings with spells, at least 93 % of intervals hold the true median."""
    rng = np.random.default_rng(2)
    truth, target, covered, n = 0.2, 0.03, 0, 300
    for _ in range(n):
        logs: list[float] = []
        while True:
            spell = rng.random() < 0.1  # a spell shifts a sitting by several per cent
            logs.append(truth + 0.02 * rng.standard_t(3) + (0.05 * rng.choice([-1, 1]) if spell else 0))
            if len(logs) < 6:
                continue
            s = realized_speedup(*_sitting_times(logs))
            assert s.low is not None and s.high is not None
            if (s.high - s.low) / 2 / s.ratio <= target or len(logs) >= 100:
                break
        covered += s.low <= math.exp(truth) <= s.high
    assert covered / n >= 0.93


def _ratios_log(n: int, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    return 0.3 + rng.normal(0, noise, n)


def _diagnosed(logs: np.ndarray, probe: list[float] | None = None, sittings: list[int] | None = None,
               log: RoundLog | None = None) -> str:
    base = np.full(len(logs), 1e-3)
    log = log or RoundLog(probe_s=probe or list(np.full(len(logs), 2e-5) * (1 + 0.01 * np.sin(np.arange(len(logs))))),
                          blocks=2 * len(logs))
    return diagnose(list(base), list(base / np.exp(logs)), log, sittings)


def test_each_reason_is_named_where_a_fake_machine_produces_it() -> None:
    rng = np.random.default_rng(3)
    n = 40
    assert _diagnosed(_ratios_log(n, rng)) == "noisy"
    contended = RoundLog(blocks=2 * n, retaken={"wait": n}, probe_s=[2e-5] * n)
    assert _diagnosed(_ratios_log(n, rng), log=contended) == "contended"
    speed = 2e-5 * np.exp(rng.normal(0, 0.05, n))  # the machine's speed moves, and the ratio with it
    assert _diagnosed(0.3 + 0.5 * np.log(speed / 2e-5) + rng.normal(0, 0.005, n), probe=list(speed)) == "drifting"
    assert _diagnosed(_ratios_log(n, rng) + np.linspace(0, 0.08, n)) == "drifting"  # a trend over the run
    two = np.where(rng.random(n) < 0.5, 0.3, 0.4) + rng.normal(0, 0.003, n)
    assert _diagnosed(two) == "bimodal"
    per_sitting = np.repeat(rng.normal(0, 0.03, n // 4), 4) + _ratios_log(n, rng, 0.003)
    assert _diagnosed(per_sitting, sittings=[4] * (n // 4)) == "sittings"


def test_the_machine_s_own_noise_is_not_called_drift() -> None:
    """The old rule called a group drifting when its probe's 90th over 10th percentile passed 1.2, below the
    probe's own scatter on these VMs (1.35): a probe that wanders widely but independently of the ratio
    and without a trend is no reason."""
    rng = np.random.default_rng(4)
    probe = list(2e-5 * np.exp(rng.normal(0, 0.15, 40)))  # 90th/10th ≈ 1.5
    assert _diagnosed(_ratios_log(40, rng), probe=probe) == "noisy"


def test_the_resolution_a_run_prints_beside_its_own_is_the_committed_runs() -> None:
    """`sepbench run` prints what `default` reached on the reference VMs beside what it reached here:
    those figures are the committed runs' median half-widths, lowest and highest."""
    halves = []
    for path in sorted((ROOT / "results" / "trust" / "between-run").glob("*.jsonl")):
        real = [r["realized"] for line in path.read_text().splitlines()
                if (r := json.loads(line)).get("kind") == "case" and r.get("realized")]
        halves.append(float(np.median([r["half_width"] for r in real])))
    low, high, where = between.DOCUMENTED["default"]
    assert (round(low, 4), round(high, 4)) == (round(min(halves), 4), round(max(halves), 4))
    assert (ROOT / where.split(",")[0]).exists()


# `sepbench ab`: the same component for a comparison's per-case ratio.

def test_the_ab_reference_tau_is_what_the_committed_aa_comparisons_give() -> None:
    assert round(between.ab_reference(ROOT), 4) == between.AB_REFERENCE_TAU


def test_an_ab_interval_holds_tau_in_quadrature_and_is_the_t_test_without_it() -> None:
    from scipy import stats

    from sepbench.ab.stats import paired

    rng = np.random.default_rng(3)
    a = rng.uniform(1.0, 2.0, 24)
    b = a * np.exp(rng.normal(0.01, 0.02, 24))
    pairs = [i // 4 for i in range(24)]
    medians = np.array([np.median(np.log(b / a)[4 * k:4 * k + 4]) for k in range(6)])
    plain, wide = paired(a, b, pairs), paired(a, b, pairs, tau=0.01)
    t = stats.ttest_1samp(medians, 0.0)
    assert (math.log(plain.low), math.log(plain.high), plain.p) == pytest.approx(
        (t.confidence_interval(0.95).low, t.confidence_interval(0.95).high, t.pvalue))
    se = medians.std(ddof=1) / math.sqrt(6)
    assert wide.half_width == pytest.approx(stats.t.ppf(0.975, 5) * math.hypot(se, 0.01))
    assert wide.ratio == plain.ratio and wide.p > plain.p


def _repeat(src: Path, dest: Path, host: str, tau: float, seed: int, env_b: dict | None = None) -> None:
    """A committed A/A comparison as a repeat on `host` whose every case moved by a draw of N(0, tau)."""
    rng = np.random.default_rng(seed)
    lines = [json.loads(line) for line in src.read_text().splitlines()]
    lines[0]["a"]["environment"]["host"] = host
    if env_b is not None:
        lines[0]["b"]["env"] = env_b
    for r in lines[1:]:
        if r.get("kind") == "ab_case" and r.get("b_s"):
            r["b_s"] = list(np.asarray(r["b_s"]) * math.exp(rng.normal(0, tau)))
    dest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_a_comparison_takes_tau_from_this_hosts_repeats_of_it(tmp_path: Path) -> None:
    from sepbench.ab.stats import comparison
    from sepbench.store import read_ab

    files = [ROOT / p for p in between.AB_REFERENCE[:2]]
    _repeat(files[0], tmp_path / "a.jsonl", "h1", 0.02, seed=1)
    header = read_ab(tmp_path / "a.jsonl").header
    assert between.for_ab(tmp_path, header).pairs == 0  # one is not a pair: the reference
    _repeat(files[1], tmp_path / "b.jsonl", "h1", 0.02, seed=2)
    _repeat(files[1], tmp_path / "c.jsonl", "h2", 0.05, seed=3)  # another host's says nothing of this one
    _repeat(files[1], tmp_path / "d.jsonl", "h1", 0.05, seed=4, env_b={"X": "1"})  # another comparison
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    found = between.for_ab(tmp_path, header)
    runs = [between.ab_estimates(comparison(read_ab(tmp_path / f).records, 2)[0], 0.0) for f in ("a.jsonl", "b.jsonl")]
    assert (found.pairs, found.tau) == (1, pytest.approx(between.estimate(runs)[0]))
    assert 0.012 <= found.tau <= 0.028 and "this host" in found.source  # the 2 % each case was moved by

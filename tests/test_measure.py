"""Timer agreement with torch.utils.benchmark.Timer, interleaving, noise flags, speedup intervals, memory."""

from __future__ import annotations

import itertools
import signal
import statistics
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch.utils.benchmark import Timer

from sepbench.case import Case
from sepbench.measure import machine
from sepbench.measure.fresh import _interrupts_held
from sepbench.measure.memory import ProbeFailed, cpu_peak
from sepbench.measure.timer import (
    calibrate,
    diagnose,
    intra_op_threads,
    measure_interleaved,
    measure_sittings,
    synchronizer,
)
from sepbench.measure.workload import Workload
from sepbench.speedup import realized_speedup
from sepbench.theory import case_cost


def _ours(step, threads: int) -> float:
    with intra_op_threads(threads):
        return measure_interleaved({"x": step}, synchronizer("cpu"), min_run_time=0.4, min_rounds=10,
                                   max_rounds=500, block_time=0.01, warmup_time=0.05)["x"].median


def _reference(step, threads: int) -> float:
    return Timer("step()", globals={"step": step}, num_threads=threads).blocked_autorange(min_run_time=0.4).median


def test_median_agrees_with_torch_benchmark_timer_within_10_percent() -> None:
    """Agreement is statistical and the test machine is shared: the two timers alternate five times
    and the medians are compared; a noisy attempt may be repeated twice. A systematic difference (a
    thread count not applied, a missing warm-up or sync) fails all three attempts."""
    work = Workload(Case("standard", c_in=64, c_out=64, size=28))
    ratios = []
    for _ in range(3):
        ours, ref = [], []
        for _ in range(5):
            ours.append(_ours(work.step, 1))
            ref.append(_reference(work.step, 1))
        ratios.append(statistics.median(ours) / statistics.median(ref))
        if 0.9 <= ratios[-1] <= 1.1:
            return
    pytest.fail(f"sepbench/Timer median ratios {ratios} all lie outside [0.9, 1.1]")


def test_interleaving_gives_every_variant_the_same_rounds_and_restores_threads() -> None:
    before = torch.get_num_threads()
    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
        timings = measure_interleaved(fns, synchronizer("cpu"), min_run_time=0.0, min_rounds=6, max_rounds=6,
                                      block_time=1e-6, warmup_time=0.0)
    assert torch.get_num_threads() == before
    assert {len(t.times) for t in timings.values()} == {6}
    assert all(t.warmup_calls >= 3 for t in timings.values())


class FakeClock:
    """`time.perf_counter` for sepbench's timer: each call of a timed function moves it on by the next
    of that function's durations, so block times and intervals are known exactly. The block's CPU time
    follows the clock unless a block is marked as waited, as `machine.snapshot` would read it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        self.waited = 0.0  # run-queue wait so far, what schedstat would say
        monkeypatch.setattr("sepbench.measure.timer.time.perf_counter", lambda: self.now)
        monkeypatch.setattr(machine, "snapshot", lambda: machine.Snapshot(
            self.now, self.now - self.waited, 0, self.now - self.waited, self.waited, 0.0))

    def fn(self, durations: list[float], waits: list[float] | None = None):
        cycle = itertools.cycle(durations)
        wait_cycle = itertools.cycle(waits or [0.0])

        def call() -> None:
            d, w = next(cycle), next(wait_cycle)
            self.now += d + w
            self.waited += w
        return call


def test_a_contended_block_is_retaken_and_never_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    # 1 ms calls; the 10th call of "w" (its 4th timed block, after 3 warm-up and 3 calibration calls) waits
    # 5 ms on a run queue: another process had the core.
    waits = [0.0] * 9 + [0.005] + [0.0] * 1000
    fns = {"base": clock.fn([1e-3]), "w": clock.fn([1e-3], waits)}
    timings = measure_interleaved(fns, synchronizer("cpu"), min_run_time=0.0, min_rounds=8, max_rounds=8,
                                  block_time=1e-3, warmup_time=0.0, probe=False)
    log = timings["w"].log
    assert log is not None and log.retaken == {"wait": 1} and log.kept_contended == 0
    assert timings["w"].times == [pytest.approx(1e-3)] * 8  # the 6 ms block was timed again
    assert log.blocks == 16


def test_a_machine_never_free_costs_a_bounded_number_of_retakes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    fns = {"base": clock.fn([1e-3], [1e-3]), "w": clock.fn([1e-3], [1e-3])}  # every call waits as long as it runs
    timings = measure_interleaved(fns, synchronizer("cpu"), min_run_time=0.0, min_rounds=10, max_rounds=10,
                                  block_time=1e-3, warmup_time=0.0, probe=False)
    log = timings["w"].log
    assert log is not None and log.blocks == 20
    assert log.retaken_total <= log.blocks and log.kept_contended > 0
    assert diagnose(timings["base"].times, timings["w"].times, log) == "contended"


def test_a_first_call_spike_still_gives_blocks_as_long_as_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    step = clock.fn([0.060] + [0.00035] * 10_000)  # the first call lands in a 60 ms preemption
    number = calibrate(step, lambda: None, block_time=0.010)
    assert number * 0.00035 >= 0.010
    assert number > 1


def test_a_group_stops_once_every_interval_is_within_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    fns = {"base": clock.fn([2e-3]), "w": clock.fn([1e-3])}  # an exact 2×: the interval has no width
    timings = measure_interleaved(fns, synchronizer("cpu"), min_run_time=0.0, min_rounds=10, max_rounds=500,
                                  block_time=1e-3, warmup_time=0.0, probe=False, baseline="base", target=0.02)
    assert timings["w"].log is not None and timings["w"].log.stop == "target"
    assert len(timings["w"].times) == 10


def test_a_group_that_cannot_reach_the_target_stops_at_its_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    rng = np.random.default_rng(0)
    noisy = list(1e-3 * np.exp(0.5 * rng.standard_normal(997)))  # ±50 % per block: never within ±1 %
    fns = {"base": clock.fn([2e-3]), "w": clock.fn(noisy)}
    timings = measure_interleaved(fns, synchronizer("cpu"), min_run_time=0.0, min_rounds=10, max_rounds=10_000,
                                  block_time=1e-3, warmup_time=0.0, probe=False, baseline="base", target=0.01,
                                  allowance=0.5)
    log = timings["w"].log
    assert log is not None and log.stop == "budget"
    assert 0.5 <= log.seconds < 0.6  # one round past the allowance at most


def _sitting_of(clock: FakeClock, speeds: Iterator[float], seen: list) -> Callable:
    """A sitting as `measure_sittings` calls it: fresh callables each time (the variant at the next of
    `speeds`), timed by the real interleaving on the fake clock; `seen` records the calls per block given."""
    def sit(rounds: int, numbers: dict | None, first_round: int) -> dict:
        seen.append((numbers, first_round))
        fns = {"base": clock.fn([2e-3]), "w": clock.fn([1e-3 * next(speeds)])}
        return measure_interleaved(fns, synchronizer("cpu"), min_run_time=0.0, min_rounds=rounds, max_rounds=rounds,
                                   block_time=1e-3, warmup_time=0.0, probe=False, numbers=numbers,
                                   first_round=first_round)
    return sit


def test_sittings_are_taken_anew_and_reuse_the_first_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, seen = FakeClock(monkeypatch), []
    timings = measure_sittings(_sitting_of(clock, itertools.repeat(1.0), seen), baseline="base", target=None,
                               allowance=None, sitting_rounds=2, min_sittings=4, max_rounds=100)
    assert timings["w"].sittings == [2, 2, 2, 2] and len(timings["w"].times) == 8
    assert seen[0][0] is None and all(n == seen[1][0] for n, _ in seen[1:]) and seen[1][0]["w"] >= 1
    assert [first for _, first in seen] == [0, 2, 4, 6]  # the order keeps rotating across sittings
    assert timings["w"].log is not None and timings["w"].log.blocks == 16


def test_the_interval_is_over_sittings_and_a_spell_does_not_move_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sitting keeps a speed of its own (rounds within a sitting agree exactly, so an interval over
    rounds would be as narrow as it gets and wrong). Over sittings, the median and its order-statistic
    interval hold the spread, and two sittings in a spell, the variant 10 % slower, do not move it."""
    from scipy import stats

    clock = FakeClock(monkeypatch)
    speeds = list(np.exp(0.01 * np.random.default_rng(1).permutation(np.linspace(-1.5, 1.5, 10))))
    speeds[3:3] = [1.10, 1.10]  # sittings 4 and 5 in the spell
    timings = measure_sittings(_sitting_of(clock, iter(speeds), []), baseline="base", target=None,
                               allowance=None, sitting_rounds=2, min_sittings=12, max_rounds=400)
    w, base = timings["w"], timings["base"]
    s = realized_speedup(base.times, w.times, w.sittings)
    logs = np.log(2 / np.asarray(speeds))
    ci = stats.quantile_test(logs, q=np.median(logs), p=0.5).confidence_interval(0.95)
    assert s.ratio == pytest.approx(np.exp(np.median(logs)))
    assert (s.low, s.high) == pytest.approx((np.exp(ci.low), np.exp(ci.high)))
    assert s.low is not None and s.high is not None and s.low < 2 < s.high
    assert abs(s.ratio / 2 - 1) < 0.01 < abs(np.exp(logs.mean()) / 2 - 1)  # the mean would have moved
    older = realized_speedup(base.times, w.times, w.sittings, estimator=None)  # records before the median
    assert older.ratio == pytest.approx(np.exp(logs.mean()))


def test_sittings_stop_at_the_target_once_an_interval_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draws within ±1 % meet a ±2 % target as soon as the median has an interval at 95 %: 6 sittings."""
    clock = FakeClock(monkeypatch)
    timings = measure_sittings(_sitting_of(clock, itertools.cycle([1.01, 0.99, 1.0]), []), baseline="base",
                               target=0.02, allowance=None, sitting_rounds=2, min_sittings=2, max_rounds=400)
    w = timings["w"]
    assert w.log is not None and w.log.stop == "target" and w.sittings == [2] * 6


def test_sittings_stop_at_their_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    rng = np.random.default_rng(0)
    speeds = iter(np.exp(0.3 * rng.standard_normal(10_000)))  # ±30 % a sitting: never within ±1 %
    timings = measure_sittings(_sitting_of(clock, speeds, []), baseline="base", target=0.01, allowance=0.5,
                               sitting_rounds=2, min_sittings=4, max_rounds=10_000)
    log = timings["w"].log
    assert log is not None and log.stop == "budget" and 0.5 <= log.seconds < 0.6


def test_the_detector_reads_a_busy_block_from_its_own_rusage() -> None:
    quiet = machine.compare(machine.Snapshot(0.0, 0.0, 0, 0.0, 0.0, 0.0),
                            machine.Snapshot(0.010, 0.00995, 0, 0.00995, 0.0, 0.0))
    preempted = machine.compare(machine.Snapshot(0.0, 0.0, 0, 0.0, 0.0, 0.0),
                                machine.Snapshot(0.020, 0.010, 3, 0.010, 0.010, 0.0))
    stolen = machine.compare(machine.Snapshot(0.0, 0.0, 0, 0.0, 0.0, 5.0),
                             machine.Snapshot(0.020, 0.020, 0, 0.020, 0.0, 5.01))
    two_threads_one_core = machine.compare(machine.Snapshot(0.0, 0.0, 0, None, None, None),
                                           machine.Snapshot(0.020, 0.021, 0, None, None, None), threads=2)
    assert quiet.reason() is None
    assert preempted.reason() == "wait"
    assert stolen.reason() == "steal"
    assert two_threads_one_core.reason(threads=2) == "cpu"
    assert two_threads_one_core.reason(threads=2, cpu_bound=False) is None  # a CUDA sync may sleep


def test_the_busy_line_names_the_load_and_what_to_do() -> None:
    assert machine.busy_line({"other_cores": 0.1}, threads=1, cores=2) is None
    line = machine.busy_line({"other_cores": 1.0}, threads=1, cores=2)
    assert line and "busy" in line and "1.0 of 2 cores" in line
    crowded = machine.busy_line({"other_cores": 1.0}, threads=2, cores=2)
    assert crowded and "--threads 1" in crowded


def test_realized_speedup_is_the_median_ratio_with_a_paired_interval() -> None:
    rng = np.random.default_rng(0)
    drift = np.linspace(1.0, 1.5, 40)  # slow drift hits both members of a pair alike
    base = 2.0 * drift * (1 + 0.01 * rng.standard_normal(40))
    variant = 1.0 * drift * (1 + 0.01 * rng.standard_normal(40))
    s = realized_speedup(list(base), list(variant))
    assert s.ratio == pytest.approx(np.median(base) / np.median(variant))
    assert s.low is not None and s.high is not None
    assert s.low <= s.ratio <= s.high < 2.05 and s.low > 1.95
    # Pairing is what makes it narrow: resampling the rounds unpaired lets the drift in.
    from scipy import stats
    unpaired = stats.bootstrap((base, variant), lambda b, v, axis=-1: np.median(b, axis=axis) / np.median(v, axis=axis),
                               paired=False, vectorized=True, n_resamples=2000, method="percentile",
                               rng=np.random.default_rng(0)).confidence_interval
    assert (unpaired.high - unpaired.low) > 4 * (s.high - s.low)
    assert realized_speedup([1.0, 2.0], [1.0, 2.0]).low is None  # too few rounds for an interval


def test_cpu_peak_memory_is_measured_in_a_fresh_child_and_grows_with_activations() -> None:
    small = cpu_peak(Case("standard", c_in=16, c_out=16, size=16), threads=1)
    large_case = Case("standard", c_in=64, c_out=64, size=128, batch=4)
    large = cpu_peak(large_case, threads=1)
    assert small.cpu_method and "fresh child" in small.cpu_method
    assert large.cpu_rss_rise_bytes is not None and small.cpu_rss_rise_bytes is not None
    # The output alone is 16 MiB here; the peak rise must at least cover it.
    output_bytes = case_cost(large_case).activation_bytes()
    assert large.cpu_rss_rise_bytes >= output_bytes
    assert large.cpu_rss_rise_bytes > small.cpu_rss_rise_bytes


def test_cpu_peak_reports_a_failing_case_instead_of_crashing() -> None:
    with pytest.raises(ProbeFailed):
        cpu_peak(Case("standard", device="cuda") if not torch.cuda.is_available() else Case("nonsense"), threads=1)


@pytest.mark.process_env
@pytest.mark.usefixtures("foreground_sigint")
def test_a_ctrl_c_during_a_probe_start_lands_after_the_handshake() -> None:
    """The forkserver handshake is never cut in half: the interrupt waits for the block, then
    arrives as usual, and the handlers are the caller's again."""
    before = signal.getsignal(signal.SIGINT)
    reached_end = False
    with pytest.raises(KeyboardInterrupt), _interrupts_held():
        signal.raise_signal(signal.SIGINT)
        reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is before

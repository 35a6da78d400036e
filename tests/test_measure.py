"""Timer agreement with torch.utils.benchmark.Timer, interleaving, noise flags, speedup intervals, memory."""

from __future__ import annotations

import itertools
import signal
import statistics
import time

import numpy as np
import pytest
import torch
from torch.utils.benchmark import Timer

from sepbench.case import Case
from sepbench.grid import MeasureSettings
from sepbench.measure.memory import ProbeFailed, _interrupts_held, cpu_peak
from sepbench.measure.timer import intra_op_threads, measure_interleaved, measure_stable, synchronizer
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


def test_noisy_measurement_is_remeasured_then_flagged() -> None:
    durations = itertools.cycle([0.0002, 0.0002, 0.002])  # every third block is 10× slower

    def noisy() -> None:
        time.sleep(next(durations))

    timings = measure_stable({"noisy": noisy, "steady": lambda: None}, synchronizer("cpu"),
                             unstable_threshold=0.1, min_run_time=0.0, min_rounds=12, max_rounds=12,
                             block_time=1e-9, warmup_time=0.0)
    assert timings["noisy"].remeasured and timings["noisy"].unstable
    assert timings["noisy"].relative_iqr > 0.1


class FakeClock:
    """`time.perf_counter` for sepbench's timer: each call of a timed function moves it on by the next
    of that function's durations, so block times, IQRs and flags are known exactly."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        monkeypatch.setattr("sepbench.measure.timer.time.perf_counter", lambda: self.now)

    def fn(self, durations: list[float]):
        cycle = itertools.cycle(durations)

        def call() -> None:
            self.now += next(cycle)
        return call


@pytest.mark.parametrize(("spread", "flagged"), [(0.09, False), (0.11, True)])
def test_the_default_threshold_flags_an_iqr_just_above_it_and_not_just_below(
        monkeypatch: pytest.MonkeyPatch, spread: float, flagged: bool) -> None:
    clock = FakeClock(monkeypatch)
    # Blocks of one call each, cycling 1, 1+s, 1, 1+s: q1 = 1, q3 = 1+s, median = 1+s/2.
    cycle = [1e-3, 1e-3 * (1 + spread)]
    threshold = MeasureSettings().unstable_threshold
    assert threshold == 0.10
    timings = measure_stable({"w": clock.fn(cycle), "steady": clock.fn([1e-3])}, synchronizer("cpu"),
                             unstable_threshold=threshold, min_run_time=0.0, min_rounds=12, max_rounds=12,
                             block_time=1e-9, warmup_time=0.0)
    assert timings["w"].relative_iqr == pytest.approx(spread / (1 + spread / 2), rel=1e-6)
    assert timings["w"].remeasured is flagged and timings["w"].unstable is flagged
    assert not timings["steady"].unstable


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

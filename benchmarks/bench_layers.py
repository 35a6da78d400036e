"""asv benchmarks over benchmarks/grid.toml: time, peak memory, theory and realized speedup per variant.
Thin adapters: every layer, cost and timing comes from the sepbench package."""

from __future__ import annotations

from benchmarks.common import GRID, LayerBenchmark, block_edge_clock, case_for, prepared
from sepbench.theory import case_cost, compare

try:
    from sepbench.measure.timer import measure_interleaved, synchronizer
    from sepbench.speedup import realized_speedup
except ImportError:  # commits before the measure/ and report/ layout, for `asv run` over history
    from sepbench.compare import realized_speedup  # type: ignore[no-redef]
    from sepbench.timer import measure_interleaved, synchronizer  # type: ignore[no-redef]

_M = GRID.measure


class TimeLayer(LayerBenchmark):
    """What `sepbench run` times, in asv's own terms. A sample is a batch of `number` back-to-back steps
    (asv picks `number` so a batch lasts `sample_time`, sepbench's block time) divided by `number`,
    after `warmup_time` of steps; the clock synchronizes CUDA at the batch edges only, as sepbench's
    blocks do. There is no setup hook: asv_runner re-runs setup before every timed call when one
    exists (asv#966) and then times single steps. Each round is a fresh process, interleaved with the
    other parameter sets, so the median spans processes and time, not one draw of either."""

    timer = staticmethod(block_edge_clock)
    sample_time = _M.block_time
    warmup_time = 0.25  # the first call builds the Workload; asv's warm-up absorbs it
    repeat = (_M.min_rounds, 2 * _M.min_rounds, 1.0)  # samples per round: (min, max, seconds)
    rounds = 2  # asv's default; `nox -s crosscheck` runs one round a pass and keeps each pass's file

    def time_step(self, device: str, mode: str, c_in: int, variant: str) -> None:
        prepared(device, mode, c_in, variant).step()


class PeakMemLayer(LayerBenchmark):
    """asv's peakmem is the process's peak RSS, setup included: subtract peakmem_reference (the same
    setup, no step) from peakmem_steps to get what three steps add."""

    def setup(self, device: str, mode: str, c_in: int, variant: str) -> None:
        self.work = prepared(device, mode, c_in, variant)
        self.sync = synchronizer(device)

    def peakmem_steps(self, *params: object) -> None:
        for _ in range(3):
            self.work.step()
        self.sync()

    def peakmem_reference(self, *params: object) -> None:
        pass


class TrackRealizedSpeedup(LayerBenchmark):
    """Measured by sepbench's timer, interleaved with the baseline in this process, as `sepbench run` does."""

    def setup(self, device: str, mode: str, c_in: int, variant: str) -> None:
        baseline = case_for(device, mode, c_in, variant).baseline().variant
        base, work = prepared(device, mode, c_in, baseline), prepared(device, mode, c_in, variant)
        timings = measure_interleaved({"base": base.step, "variant": work.step}, synchronizer(device),
                                      **_M.interleaved())
        self.speedup = realized_speedup(timings["base"].times, timings["variant"].times).ratio

    def track_realized_speedup(self, *params: object) -> float:
        return self.speedup

    track_realized_speedup.unit = "× vs standard (measured)"


class TrackTheory:
    """The cost model's figures; no device needed, so no device parameter."""

    params = LayerBenchmark.params[1:]
    param_names = LayerBenchmark.param_names[1:]
    skip_params = sorted({combo[1:] for combo in LayerBenchmark.skip_params if combo[0] == "cpu"})

    def track_flops(self, mode: str, c_in: int, variant: str) -> int:
        return case_cost(case_for("cpu", mode, c_in, variant)).flops(mode)

    track_flops.unit = "FLOPs (2mac) per step"

    def track_params(self, mode: str, c_in: int, variant: str) -> int:
        return case_cost(case_for("cpu", mode, c_in, variant)).params

    track_params.unit = "parameters"

    def track_theoretical_speedup(self, mode: str, c_in: int, variant: str) -> float:
        return compare(case_for("cpu", mode, c_in, variant)).speedup

    track_theoretical_speedup.unit = "× vs standard (FLOP ratio)"

"""asv benchmarks over benchmarks/grid.toml: time, peak memory, theory and realized speedup per variant.
Thin adapters: every layer, cost and timing comes from the sepbench package."""

from __future__ import annotations

from benchmarks.common import GRID, PARAM_NAMES, PARAMS, LayerBenchmark, case_for, workload
from sepbench.compare import realized_speedup
from sepbench.theory import case_cost, compare
from sepbench.timer import measure_interleaved


class TimeLayer(LayerBenchmark):
    """asv's own timer around one sepbench step (CUDA synchronized inside, so the kernel is timed)."""

    warmup_time = 0.2
    rounds = 1  # each parameter set is its own spawned process already (≈ 2 s of torch import each)

    def time_step(self, *params: object) -> None:
        self.work.step()
        self.sync()


class PeakMemLayer(LayerBenchmark):
    """asv's peakmem is the process's peak RSS, setup included: subtract peakmem_reference (the same
    setup, no step) from peakmem_steps to get what three steps add."""

    def peakmem_steps(self, *params: object) -> None:
        for _ in range(3):
            self.work.step()
        self.sync()

    def peakmem_reference(self, *params: object) -> None:
        pass


class TrackRealizedSpeedup(LayerBenchmark):
    """Measured by sepbench's timer, interleaved with the baseline in this process, as `sepbench run` does."""

    def setup(self, device: str, mode: str, c_in: int, variant: str) -> None:
        super().setup(device, mode, c_in, variant)
        base = workload(self.case.baseline())
        timings = measure_interleaved({"base": base.step, "variant": self.work.step}, self.sync,
                                      **GRID.measure.interleaved())
        self.speedup = realized_speedup(timings["base"].times, timings["variant"].times).ratio

    def track_realized_speedup(self, *params: object) -> float:
        return self.speedup

    track_realized_speedup.unit = "× vs standard (measured)"


class TrackTheory:
    """The cost model's figures; no device needed, so no device parameter."""

    params = PARAMS[1:]
    param_names = PARAM_NAMES[1:]

    def setup(self, mode: str, c_in: int, variant: str) -> None:
        self.case = case_for("cpu", mode, c_in, variant)

    def track_flops(self, mode: str, c_in: int, variant: str) -> int:
        return case_cost(self.case).flops(mode)

    track_flops.unit = "FLOPs (2mac) per step"

    def track_params(self, mode: str, c_in: int, variant: str) -> int:
        return case_cost(self.case).params

    track_params.unit = "parameters"

    def track_theoretical_speedup(self, mode: str, c_in: int, variant: str) -> float:
        return compare(self.case).speedup

    track_theoretical_speedup.unit = "× vs standard (FLOP ratio)"


"""What every benchmark class of the asv suite shares: the grid (benchmarks/grid.toml, a plain sepbench
grid file) and turning one parameter tuple into a ready sepbench Workload.

Parameters are named after sepbench's Case fields, so asv results join sepbench records by name.
They are the same with or without a GPU; a CUDA case on a machine without one, and a combination the
grid refuses, raise NotImplementedError in setup, which asv reports as skipped. Nothing here touches
CUDA or NVML at import time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sepbench.spec import Case, load_grid
from sepbench.timer import synchronizer
from sepbench.workload import Workload, backend_flags

GRID = load_grid(Path(__file__).with_name("grid.toml"))
AXES = GRID.spec.grid
PARAM_NAMES = ["device", "mode", "c_in", "variant"]
PARAMS = [AXES.device, AXES.mode, AXES.c_in, AXES.variants]
CASES: dict[tuple, Case] = {
    (c.device, c.mode, c.c_in, c.variant): c for c in GRID.expand()[0]
    if c.groups in (1, AXES.groups[0])  # one grouped case per geometry
}


_WORKLOADS: dict[str, Workload] = {}


def workload(case: Case) -> Workload:
    """One Workload per case and process. asv re-runs `setup` before every timed call (asv#966); a
    module built anew each time would have asv time oneDNN's weight reorders and cold caches
    (about +50 µs a call here), not the layer."""
    if case.id not in _WORKLOADS:
        _WORKLOADS[case.id] = Workload(case)
    return _WORKLOADS[case.id]


def case_for(device: str, mode: str, c_in: int, variant: str) -> Case:
    case = CASES.get((device, mode, c_in, variant))
    if case is None:
        raise NotImplementedError(f"{variant} at c_in={c_in} is not a valid case of the grid")
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA device on this machine")
    return case


class LayerBenchmark:
    """Base of the classes that run a layer: builds the Workload, sets the case's backend flags."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 300

    def setup(self, device: str, mode: str, c_in: int, variant: str) -> None:
        self.case = case_for(device, mode, c_in, variant)
        threads = GRID.measure.threads
        if threads and torch.get_num_threads() != threads:  # setup re-runs per timed call: set once
            torch.set_num_threads(threads)
        self.flags = backend_flags(self.case)
        self.flags.__enter__()
        self.work = workload(self.case)
        self.sync = synchronizer(device)

    def teardown(self, *params: object) -> None:
        flags = self.__dict__.pop("flags", None)  # asv tears down skipped cases too
        if flags is not None:
            flags.__exit__(None, None, None)

"""What every benchmark class of the asv suite shares: the grid (benchmarks/grid.toml, a plain sepbench
grid file), which parameter sets it refuses, and one ready sepbench Workload per case and process.

Parameters are named after sepbench's Case fields, so asv results join sepbench records by name.
They are the same with or without a GPU. Which combinations are skipped (a CUDA case on a machine
without one, a combination the grid refuses) is decided at discovery and given to asv as
`skip_params`, so no benchmark needs a setup hook to refuse a case. Nothing here creates a CUDA
context or touches NVML at import: `torch.cuda.is_available()` only counts devices.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch

try:
    from sepbench.case import Case
    from sepbench.grid import load_grid
    from sepbench.measure.workload import Workload, backend_flags
except ImportError:  # commits before the measure/ and report/ layout, for `asv run` over history
    from sepbench.spec import Case, load_grid  # type: ignore[no-redef]
    from sepbench.workload import Workload, backend_flags  # type: ignore[no-redef]
try:
    from sepbench.measure.timer import cores_for, pinned
except ImportError:  # commits from before sepbench pinned its measurements to cores
    cores_for = pinned = None  # type: ignore[assignment]

GRID = load_grid(Path(__file__).with_name("grid.toml"))
AXES = GRID.spec.grid
PARAM_NAMES = ["device", "mode", "c_in", "variant"]
PARAMS = [AXES.device, AXES.mode, AXES.c_in, AXES.variants]
CASES: dict[tuple, Case] = {
    (c.device, c.mode, c.c_in, c.variant): c for c in GRID.expand()[0]
    if c.groups in (1, AXES.groups[0])  # one grouped case per geometry
}
HAVE_CUDA = torch.cuda.is_available()
SKIPPED = [combo for combo in itertools.product(*PARAMS)
           if combo not in CASES or (combo[0] == "cuda" and not HAVE_CUDA)]

_READY: dict[tuple, Workload] = {}


def prepared(device: str, mode: str, c_in: int, variant: str) -> Workload:
    """The Workload of a parameter set, built on first use in this process, with the grid's intra-op
    threads, the cores `sepbench run` pins its blocks to, and the case's backend flags (TF32,
    cudnn.benchmark) set for the rest of the process, as `sepbench run` holds them for a whole group.
    asv gives every parameter set a process of its own, so nothing needs restoring; building once
    keeps oneDNN's weight reorders out of the timed calls.
    Looked up by the parameter tuple (about 0.1 µs), never by `Case.id`, which formats 20 fields
    (about 3 µs, 4–8 % of the shortest steps here) and would be timed with every call."""
    key = (device, mode, c_in, variant)
    work = _READY.get(key)
    if work is None:
        case = case_for(*key)
        threads = GRID.measure.threads or torch.get_num_threads()
        torch.set_num_threads(threads)
        if pinned is not None:
            pinned(cores_for(threads)).__enter__()
        backend_flags(case).__enter__()
        work = _READY[key] = Workload(case)
    return work


def case_for(device: str, mode: str, c_in: int, variant: str) -> Case:
    """The Case behind a parameter set that discovery did not skip."""
    return CASES[(device, mode, c_in, variant)]


def block_edge_clock() -> float:
    """asv's timer: `perf_counter` after a CUDA synchronize, so a sample of `number` steps ends when the
    device has finished them. sepbench's blocks synchronize at their edges in the same way, never
    between steps; on the CPU this is plain `perf_counter`."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


class LayerBenchmark:
    """Base of the classes that run a layer: the grid's parameters, its refusals, a timeout."""

    params = PARAMS
    param_names = PARAM_NAMES
    skip_params = SKIPPED
    timeout = 300

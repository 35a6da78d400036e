"""pytest-benchmark suite over benchmarks/grid.toml: one group per geometry, so the variants of a case
sit side by side in the comparison table. A thin adapter: layers, costs and warm-up come from sepbench.

    pytest benchmarks/pytest_suite --benchmark-enable --benchmark-storage=results/pytest-benchmark \\
        --benchmark-autosave                                   # measure and save
    ... --benchmark-compare --benchmark-compare-fail=median:10%   # regression gate against the last save

Under the ordinary test run (`--benchmark-disable`, the project default) each case runs once: a
correctness smoke of every case of the grid.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sepbench.case import Case
from sepbench.grid import load_grid
from sepbench.measure.environment import fingerprint
from sepbench.measure.timer import calibrate, cores_for, intra_op_threads, pinned, synchronizer, warm_up
from sepbench.measure.workload import Workload, backend_flags
from sepbench.theory import case_cost, compare

GRID = load_grid(Path(__file__).parents[1] / "grid.toml")
CASES = sorted(GRID.expand()[0], key=lambda c: (c.group_id, c.variant != "standard", c.id))
ENV_KEYS = ("machine", "torch", "onednn", "cpu", "gpu", "cudnn", "threads", "sepbench_commit")


@pytest.fixture(scope="session")
def environment() -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = fingerprint(device, GRID.measure.threads or torch.get_num_threads())
    return {k: env.get(k) for k in ENV_KEYS}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.device}-{c.mode}-c{c.c_in}-{c.label()}")
def test_layer_step(benchmark, case: Case, environment: dict) -> None:
    if case.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    cost = case_cost(case)
    benchmark.group = case.geometry()
    benchmark.extra_info.update(
        case_id=case.id, variant=case.variant, device=case.device, mode=case.mode, c_in=case.c_in,
        flops_2mac=cost.flops(case.mode), params=cost.params, theoretical_speedup=compare(case).speedup,
        **{f"env_{k}": v for k, v in environment.items()},
    )
    sync = synchronizer(case.device)
    threads = GRID.measure.threads or torch.get_num_threads()
    with backend_flags(case), intra_op_threads(threads), pinned(cores_for(threads)):  # as `sepbench run` is
        work = Workload(case)

        def step() -> None:
            work.step()
            sync()  # pytest-benchmark's timer does not synchronize CUDA by itself

        if benchmark.disabled:  # the ordinary test run: one step, a correctness smoke
            benchmark(step)
        else:
            m = GRID.measure
            warm_up(step, sync, m.warmup_time)
            iterations = calibrate(step, sync, m.block_time)
            rounds = max(m.min_rounds, int(m.min_run_time / m.block_time))
            benchmark.pedantic(step, iterations=iterations, rounds=rounds, warmup_rounds=1)
        with torch.no_grad():
            out = work.module(work.input)
    assert tuple(out.shape) == cost.out_shape
    assert torch.isfinite(out).all()
    if case.mode == "train":  # the step ran backward: every parameter and the input hold a gradient
        assert work.input.grad is not None and all(p.grad is not None for p in work.module.parameters())

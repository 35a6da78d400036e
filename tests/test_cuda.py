"""CUDA paths. Every test here skips cleanly on a machine without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import requires_cuda
from sepbench.case import Case
from sepbench.grid import MeasureSettings, parse_grid
from sepbench.measure.runner import Runner
from sepbench.measure.timercheck import agreement
from sepbench.measure.workload import Workload, backend_flags
from sepbench.store import read_run

pytestmark = [pytest.mark.cuda, requires_cuda]

CUDA_GRID = """
[grid]
variants = ["standard", "depthwise_separable", "depthwise"]
c_in = [32]
size = [28]
device = ["cuda"]
dtype = ["float32", "float16"]
mode = ["inference", "train"]
memory_format = ["contiguous", "channels_last"]
tf32 = [true, false]
[measure]
min_run_time = 0.02
min_rounds = 5
"""


def test_cuda_grid_records_time_allocator_and_nvml_memory(tmp_path: Path) -> None:
    grid = parse_grid(CUDA_GRID, "cuda-test", "test")
    run = read_run(Runner(grid, tmp_path).run().path)
    assert run.problems == [] and run.header is not None
    assert run.header.environment["gpu"] and run.header.environment["cudnn"]
    assert set(run.header.peaks["cuda"]["flops"]) == {"float32", "tf32", "bfloat16", "float16"}
    assert len(run.records) == len(grid.expand()[0])
    for r in run.records:
        assert r.status == "ok" and r.timing is not None and r.timing.median_s > 0
        assert r.memory is not None and r.memory.cuda_alloc_peak_bytes is not None
        assert r.memory.cuda_alloc_method and "max_memory_allocated" in r.memory.cuda_alloc_method
        assert r.memory.nvml_method
    assert {r.case.tf32 for r in run.records if r.case.dtype == "float32"} == {True, False}


def test_backend_flags_are_set_per_case_and_restored() -> None:
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    with backend_flags(Case("standard", device="cuda", cudnn_benchmark=True, tf32=False)):
        assert torch.backends.cudnn.benchmark is True and torch.backends.cudnn.allow_tf32 is False
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before


def test_timer_agrees_with_torch_timer_and_cuda_events() -> None:
    settings = MeasureSettings(min_run_time=0.1, min_rounds=10, block_time=0.01)
    case = Case("standard", c_in=128, c_out=128, size=56, batch=8, device="cuda", cudnn_benchmark=True, tf32=True)
    a = agreement(case, threads=1, settings=settings)
    assert 0.9 <= a.ratio_timer <= 1.1
    assert a.ratio_events is not None and 0.9 <= a.ratio_events <= 1.1


def test_workload_runs_each_dtype_and_layout() -> None:
    for dtype in ("float32", "bfloat16", "float16"):
        for fmt in ("contiguous", "channels_last"):
            work = Workload(Case("depthwise_separable", device="cuda", dtype=dtype, memory_format=fmt, mode="train"))
            work.step()
            torch.cuda.synchronize()
            assert work.input.grad is not None

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY_GRID = """
description = "tiny grid for tests"
[grid]
variants = ["standard", "depthwise", "pointwise", "depthwise_separable"]
c_in = [8, 16]
size = [8]
[measure]
min_run_time = {min_run_time}
min_rounds = 3
max_rounds = 50
block_time = 0.001
warmup_time = 0.005
threads = 1
memory = {memory}
"""


def tiny_grid(path: Path, *, min_run_time: float = 0.02, memory: bool = False) -> Path:
    """8 cases in 2 groups of 4 variants (standard is the baseline of both)."""
    path.write_text(TINY_GRID.format(min_run_time=min_run_time, memory=str(memory).lower()))
    return path


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    return tiny_grid(tmp_path / "tiny.toml")


def sepbench(*args: str | os.PathLike, timeout: float = 300, columns: int = 200) -> subprocess.CompletedProcess:
    """The CLI as a user meets it: a separate process, its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "sepbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": str(columns)})


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
from figures import RESULTS, committed  # noqa: E402,F401  (one reader of the committed files, shared with the figures)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def foreground_sigint():
    """Ctrl-C as in a terminal's foreground, restored afterwards. A test runner started in the
    background (`cmd &`, nohup) inherits SIGINT ignored, and Python then leaves it ignored: a test of
    what Ctrl-C does sets the handler it assumes instead of inheriting it."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)

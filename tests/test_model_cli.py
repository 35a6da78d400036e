"""`sepbench model` as a user meets it: a network measured site by site into a results file that the one
reader reads, every bad input one line with exit 2 and nothing written, and a run killed with -9 that
`--resume` finishes."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sepbench.errors import SepbenchError
from sepbench.measure import between
from sepbench.model.candidates import candidates, sites
from sepbench.model.census import census
from sepbench.model.verdicts import verdict
from sepbench.store import file_kind, read, read_model

TESTS = Path(__file__).resolve().parent


def model(*args: str | os.PathLike, cwd: Path = TESTS, timeout: float = 300) -> subprocess.CompletedProcess:
    """`sepbench model …` in a process of its own, from the tests' folder (where `model_factories` is)."""
    return subprocess.run([sys.executable, "-m", "sepbench", "model", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env={**os.environ, "COLUMNS": "200"})


def _one_line_error(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sepbench: error: ") and "Traceback" not in done.stderr, lines
    assert expected in lines[0], lines[0]


def test_a_network_measured_site_by_site(tmp_path: Path) -> None:
    done = model("model_factories:odd", "--input", "1,3,40,40", "--budget", "0.2", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    [path] = list(tmp_path.glob("*.jsonl"))
    assert file_kind(path) == "model" and isinstance(read(path), type(read_model(path)))
    found = read_model(path)
    assert found.problems == [] and found.header is not None and found.network is not None
    assert found.header.between_run == {"tau": between.REFERENCE_TAU, "source": "the reference VM's (results/trust)",
                                        "pairs": 0}
    tau = between.REFERENCE_TAU
    import torch
    from model_factories import odd

    expected = sites(census(odd(), torch.randn(1, 3, 40, 40)))
    shapes = {repr(s.shape_key) for s in expected}
    assert len(found.sites) == len(shapes)  # identical shapes measured once
    assert {name for r in found.sites for name in r.layers} == {x.name for s in expected for x in s.layers}
    for r in found.sites:
        site = next(s for s in expected if s.name.split(" + ")[0] == r.layers[0])
        assert [c.name for c in r.candidates] == list(candidates(site)) or r.status != "ok"
        for c in r.candidates:
            assert c.theory == pytest.approx(r.macs / c.macs) and c.low is not None and c.low <= c.realized <= c.high
            # Each interval holds the reference between-run component: no side is nearer than 1.96 τ.
            assert min(math.log(c.realized / c.low), math.log(c.high / c.realized)) >= between.Z95 * tau - 1e-9
    swaps = {r.layers[0]: verdict(r)[1].name for r in found.sites if verdict(r)[0] == "swap"
             and r.site_kind != "depthwise + pointwise"}
    assert set(found.network.swaps) <= {name for r in found.sites for name in r.layers}
    assert all(found.network.swaps[k] == v for k, v in swaps.items() if k in found.network.swaps)
    assert "share of time" in done.stdout and "verdict" in done.stdout and f"→ {path}" in done.stdout
    assert ("measured / predicted time" in done.stdout) == bool(found.network.swaps)


@pytest.mark.parametrize(("args", "expected"), [
    (["resnet1"], "model 'resnet1': give torchvision:NAME, timm:NAME, sepbench:NAME or package.module:factory"),
    (["sepbench:mobilenet_v3"], "unknown sepbench network 'mobilenet_v3'; the zoo's networks: mobilenet_v1"),
    (["model_factories:raises"], "building the model raised ValueError: this factory needs a config file"),
    (["model_factories:not_a_module"], "model_factories:not_a_module returned a dict, not a torch.nn.Module"),
    (["model_factories:no_conv"], "has no Conv2d: there is nothing to measure layer by layer"),
    (["model_factories:odd", "--input", "1,4,32,32"], "the model rejects an input of shape (1, 4, 32, 32): "),
    (["model_factories:odd", "--input", "1,3,32"], "give N,C,H,W, four positive integers"),
    (["model_factories:odd", "--input", "1,3,0,32"], "give N,C,H,W, four positive integers"),
    (["model_factories:odd", "--budget", "nan"], "is not a finite number"),
    (["model_factories:odd", "--threads", "0"], "--threads"),
    (["model_factories:odd", "--input", "1,3,24,24", "--budget", "0.1"],
     "needs a budget of at least 0.2 min at these settings (6 site shapes; the network takes"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], expected: str) -> None:
    _one_line_error(model(*args, "--out", tmp_path / "out"), expected)
    assert not list(tmp_path.rglob("*.jsonl"))


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_a_missing_or_broken_library_names_its_extra(tmp_path: Path, package: str) -> None:
    import importlib

    try:
        importlib.import_module(package)
    except ImportError:
        _one_line_error(model(f"{package}:resnet18", "--out", tmp_path), 'pip install -e ".[models]"')
    except Exception:  # installed for another torch
        _one_line_error(model(f"{package}:resnet18", "--out", tmp_path), "does not import with torch")
    else:
        pytest.skip(f"{package} imports here")


def test_a_network_too_large_for_memory_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the device cannot hold (an allocator failure as the census runs) is said as such."""
    from click.testing import CliRunner

    import sepbench.model.run as run_module
    from sepbench.cli import cli

    def huge(*args: object, **kwargs: object) -> object:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 824633720832 bytes")

    monkeypatch.setattr(run_module, "census", huge)
    monkeypatch.chdir(TESTS)
    done = CliRunner().invoke(cli, ["model", "sepbench:mobilenet_v2", "--out", str(tmp_path)])
    assert isinstance(done.exception, SepbenchError)  # `main` prints it as one line, exit 2
    assert "sepbench:mobilenet_v2 at 1×3×224×224 does not fit in the cpu's memory" in str(done.exception)
    assert not list(tmp_path.glob("*.jsonl"))


def test_resume_of_another_model_is_refused(tmp_path: Path) -> None:
    assert model("model_factories:odd", "--input", "1,3,24,24", "--budget", "0.2", "--out", tmp_path).returncode == 0
    _one_line_error(model("sepbench:xception_block", "--resume", "--out", tmp_path),
                    "--resume: the newest model file in")
    _one_line_error(model("model_factories:odd", "--input", "1,3,32,32", "--resume", "--out", tmp_path),
                    "measured model_factories:odd at 1×3×24×24 under other settings")


def test_killed_with_sigkill_then_resumed(tmp_path: Path) -> None:
    """kill -9 after the first site is on disk; --resume measures only the rest, then the whole network:
    one record per shape, one model id, the sites from before the kill kept as they were."""
    import torch
    from model_factories import odd

    from sepbench.model.run import shapes

    args = [sys.executable, "-m", "sepbench", "model", "model_factories:odd", "--input", "1,3,48,48",
            "--budget", "3", "--out", str(tmp_path)]
    proc = subprocess.Popen(args, cwd=TESTS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    path = None
    while time.monotonic() < deadline:
        files = list(tmp_path.glob("*.jsonl"))
        if files and b'"kind":"model_site"' in files[0].read_bytes():
            path = files[0]
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert path is not None
    expected = len(shapes(sites(census(odd(), torch.randn(1, 3, 48, 48)))))
    before = read_model(path)
    assert before.network is None and 1 <= len(before.sites) < expected
    # The budget's floor grows with each shape's time per call, which a noisy VM stretches: 0.1 min was refused
    # ("needs at least 0.2 min") on one; the test is about what a resume measures, not the floor.
    done = model("model_factories:odd", "--input", "1,3,48,48", "--budget", "0.5", "--resume", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("*.jsonl")) == [path]
    after = read_model(path)
    assert after.problems == [] and after.network is not None and after.header == before.header
    assert [r.model_dump() for r in after.sites[:len(before.sites)]] == [r.model_dump() for r in before.sites]
    assert len(after.sites) == len({r.shape for r in after.sites}) == expected  # each site shape once

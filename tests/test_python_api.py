"""The Python API as a notebook user meets it: the docs page's example runs as written, and each call
refuses what its command refuses, with the same one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import sepbench
from conftest import committed

PAGE = Path(__file__).resolve().parent.parent / "docs" / "python.md"


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    """Every ```python block of docs/python.md, in order, in a fresh interpreter in an empty folder."""
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), re.S | re.M)
    assert len(blocks) >= 4
    done = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RunResult 3 cases →" in done.stdout and "Summary(cases=2" in done.stdout
    for folder in ("python", "python-ab", "python-models"):
        assert len(list((tmp_path / "results" / "local" / folder).glob("*.jsonl"))) == 1, folder


def test_import_sepbench_stays_light() -> None:
    code = "import sys, sepbench; assert 'torch' not in sys.modules and 'pandas' not in sys.modules; sepbench.read"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: sepbench.run("nope"), "unknown preset 'nope'"),
    (lambda: sepbench.run("smoke", axes={"c_in": [-1]}), "--axis"),
    (lambda: sepbench.run("smoke", out=""), "an output directory cannot be the empty path"),
    (lambda: sepbench.cost("nope"), "unknown variant 'nope'"),
    (lambda: sepbench.compare(sys.executable), "give two interpreters"),
    (lambda: sepbench.compare(sys.executable, model="sepbench:xception_block", grid="smoke"),
     "--model compares a network"),
    (lambda: sepbench.read("/nonexistent.jsonl"), "no such results file"),
])
def test_the_api_refuses_what_the_cli_refuses(call: object, message: str) -> None:
    with pytest.raises(sepbench.SepbenchError, match=re.escape(message)):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("pattern", ["compiled/compile-cpu-*T102214Z.jsonl", "ab/ab-compile-*.jsonl",
                                     "models/compiled/model-*.jsonl"])
def test_a_committed_file_reads_as_its_typed_result(pattern: str) -> None:
    (path,) = committed(pattern)
    found = sepbench.read(path)
    table = found.to_pandas()
    assert len(table) and found.lines() and found.path == path
    assert "<table" in found._repr_html_()
    kinds = {"compile": sepbench.RunResult, "ab": sepbench.ComparisonResult, "model": sepbench.ModelResult}
    assert isinstance(found, kinds[path.name.split("-")[0]])

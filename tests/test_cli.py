"""The CLI as a user meets it: bad input ends with exit 2 and one clear line, good input works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import sepbench


def _one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sepbench: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_preset() -> None:
    _one_line_error(sepbench("run", "--preset", "tiny"), "unknown preset 'tiny'",
                    "valid presets: compile, default, full")


def test_unknown_variant() -> None:
    _one_line_error(sepbench("cost", "sepconv"), "unknown variant 'sepconv'", "depthwise_separable")


def test_impossible_groups() -> None:
    _one_line_error(sepbench("cost", "grouped", "--c-in", "32", "--groups", "3"),
                    "groups=3 must divide c_in=32 and c_out=32", "valid groups: 1, 2, 4, 8, 16, 32")


def test_depthwise_channel_multiple() -> None:
    _one_line_error(sepbench("cost", "depthwise", "--c-in", "32", "--c-out", "48"), "c_out a multiple of c_in")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_without_a_gpu(tmp_path: Path) -> None:
    _one_line_error(sepbench("run", "--preset", "smoke", "--device", "cuda", "--out", tmp_path),
                    "CUDA was asked for", "torch.cuda.is_available() is False")
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[grid\n", "not valid TOML"),
        ("[grid]\nsizes = [3]\n", "unknown key 'grid.sizes'"),
        ("[grid]\nbatch = ['eight']\n", "grid.batch.0"),
        ("[measur]\n", "unknown key 'measur'"),
    ],
)
def test_bad_grid_files(tmp_path: Path, text: str, fragment: str) -> None:
    grid = tmp_path / "bad.toml"
    grid.write_text(text)
    _one_line_error(sepbench("run", "--grid", grid, "--out", tmp_path / "out"), str(grid), fragment)


def test_missing_grid_file(tmp_path: Path) -> None:
    _one_line_error(sepbench("run", "--grid", tmp_path / "nope.toml"), "cannot read grid file")


def test_unwritable_output_directory(tmp_path: Path, grid_file: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(sepbench("run", "--grid", grid_file, "--out", blocker / "results"),
                    "cannot create output directory")


@pytest.mark.parametrize("command", [["run"], ["merge", "results"], ["ab", "--aa", "--python", sys.executable],
                                     ["timercheck"]], ids=lambda c: c[0])
def test_preset_and_grid_together(grid_file: Path, command: list[str]) -> None:
    """Every command that takes a grid builds it with one helper: the same conflict, the same line."""
    _one_line_error(sepbench(*command, "--preset", "smoke", "--grid", grid_file),
                    "sepbench: error: give --preset or --grid, not both")


def test_bad_shard(grid_file: Path) -> None:
    _one_line_error(sepbench("run", "--grid", grid_file, "--shard", "3/2"), "1 ≤ K ≤ N")


def test_bad_option_value() -> None:
    _one_line_error(sepbench("cost", "standard", "--dtype", "float64"), "float64")


def test_nothing_to_resume(tmp_path: Path, grid_file: Path) -> None:
    _one_line_error(sepbench("run", "--grid", grid_file, "--out", tmp_path / "r", "--resume"), "nothing to resume")


def test_run_show_and_damaged_results(tmp_path: Path, grid_file: Path) -> None:
    out = tmp_path / "results"
    done = sepbench("run", "--grid", grid_file, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "8 cases measured" in done.stdout
    for header in ("theory ×", "roofline ×", "realized ×", "efficiency", "mem measured"):
        assert header in done.stdout
    assert "depthwise_separable" in done.stdout
    (path,) = out.glob("*.jsonl")

    shown = sepbench("show", out)
    assert shown.returncode == 0 and "depthwise_separable" in shown.stdout

    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["status"] = "exploded"
    path.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    damaged = sepbench("show", out)
    _one_line_error(damaged, "damaged results", f"{path}:2", "status")
    assert "pointwise" in damaged.stdout  # the rest still shows

    _one_line_error(sepbench("run", "--grid", grid_file, "--out", out, "--resume"), "cannot resume from damaged")


def test_list_and_module_entry_point() -> None:
    listed = sepbench("list")
    assert listed.returncode == 0
    for name in ("spatial_depthwise_separable", "mobilenet_v1_fullconv", "smoke", "networks"):
        assert name in listed.stdout


def test_cost_prints_both_conventions_and_the_theoretical_speedup() -> None:
    result = sepbench("cost", "all", "--c-in", "32", "--c-out", "64", "--size", "56")
    assert result.returncode == 0, result.stderr
    assert "FLOPs [2mac]" in result.stdout and "FLOPs [exact]" in result.stdout
    assert "7.89×" in result.stdout  # depthwise-separable 32→64, 3×3: 1 / (1/64 + 1/9)


def test_what_a_local_run_and_report_write_is_ignored_by_git() -> None:
    """The README's main command must leave a clone clean: `run` and `report` write under results/local/
    by default, and git ignores it (the committed runs were made with --out results)."""
    from sepbench.cli import report, run

    defaults = {c.name: p.default for c in (run, report) for p in c.params if p.name == "out_dir"}
    assert defaults == {"run": Path("results/local"), "report": Path("results/local/report")}
    root = Path(__file__).resolve().parent.parent
    local = ["results/local/default-cpu-x.jsonl", "results/local/report/index.html"]
    done = subprocess.run(["git", "check-ignore", *local], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2, done.stderr
    tracked = subprocess.run(["git", "check-ignore", "--no-index", "results/default-cpu-x.jsonl"], cwd=root,
                             capture_output=True, text=True)
    assert tracked.returncode == 1  # a run given --out results is not hidden


@pytest.mark.process_env
def test_a_busy_machine_is_said_on_the_first_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Other work on the cores is said before anything else, with what sepbench does about it."""
    from click.testing import CliRunner

    from conftest import tiny_grid
    from sepbench.cli import cli
    from sepbench.measure import machine

    monkeypatch.setattr(machine, "load", lambda seconds=0.3: {"other_cores": 1.0, "busiest_core": 1.0})
    grid = tiny_grid(tmp_path / "tiny.toml")
    done = CliRunner().invoke(cli, ["run", "--grid", str(grid), "--out", str(tmp_path / "out"), "--axis", "c_in=8"])
    assert done.exit_code == 0, done.output
    first = done.stderr.splitlines()[0]
    assert first.startswith("sepbench: the machine is busy: other work keeps 1.0 of ") and "re-taken" in first
    (path,) = (tmp_path / "out").glob("*.jsonl")
    assert '"other_cores":1.0' in path.read_text().splitlines()[0]


@pytest.mark.process_env
def test_refused_input_is_one_line_even_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The busy-machine line comes only once the input is accepted: a refusal stays one line."""
    from click.testing import CliRunner

    from conftest import tiny_grid
    from sepbench.cli import cli
    from sepbench.measure import machine

    monkeypatch.setattr(machine, "load", lambda seconds=0.3: {"other_cores": 1.0, "busiest_core": 1.0})
    (tmp_path / "a-file").write_text("")
    grid = tiny_grid(tmp_path / "tiny.toml")
    done = CliRunner().invoke(cli, ["run", "--grid", str(grid), "--out", str(tmp_path / "a-file" / "results")])
    # The refusal reaches `main`, which prints it as the one `sepbench: error:` line; nothing came before it.
    assert "cannot create output directory" in str(done.exception)
    assert done.stderr == ""

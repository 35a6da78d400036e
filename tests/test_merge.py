"""The sharded flow as a user with many machines runs it: a grid cut into 4 shards, each measured by its
own `sepbench run --shard K/4` process, then `sepbench merge`. The merged run must hold exactly the cases
of one unsharded run, and its report the same sections and counts; a deleted shard, a shard copied by
hand, a shard cut short and a foreign grid must each end in exit 2 with the problem named."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import sepbench, tiny_grid
from sepbench.store import read_run

AXIS = ["--axis", "mode=inference,train"]  # 4 geometries: one per shard


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards")
    grid = tiny_grid(root / "tiny.toml")
    for k in range(1, 5):  # in turn, each its own process, as 4 runners would
        done = sepbench("run", "--grid", grid, *AXIS, "--shard", f"{k}/4", "--out", root / "shards")
        assert done.returncode == 0, done.stderr
    whole = sepbench("run", "--grid", grid, *AXIS, "--out", root / "whole")
    assert whole.returncode == 0, whole.stderr
    merged = sepbench("merge", root / "shards", "--grid", grid, *AXIS, "--out", root / "merged")
    assert merged.returncode == 0, merged.stderr
    return {"root": root, "grid": grid}


def _one(folder: Path) -> Path:
    (path,) = folder.glob("*.jsonl")
    return path


def _merge(flow: dict[str, Path], folder: Path) -> tuple[int, str]:
    done = sepbench("merge", folder, "--grid", flow["grid"], *AXIS)
    return done.returncode, done.stderr


def test_the_merged_run_holds_exactly_the_unsharded_cases(flow: dict[str, Path]) -> None:
    shards = sorted((flow["root"] / "shards").glob("*.jsonl"))
    assert len(shards) == 4 and all(read_run(p).header.shard for p in shards)
    merged, whole = read_run(_one(flow["root"] / "merged")), read_run(_one(flow["root"] / "whole"))
    ids = [r.case_id for r in merged.records]
    assert len(ids) == len(set(ids)) == 16
    assert set(ids) == {r.case_id for r in whole.records}
    assert merged.header.shard is None and merged.header.grid_digest == whole.header.grid_digest
    assert {r.run_id for r in merged.records} == {merged.header.run_id}
    assert sorted(s["shard"] for s in merged.header.environment["merged_shards"]) == [f"{k}/4" for k in range(1, 5)]


def test_the_report_of_the_shards_matches_the_unsharded_one(flow: dict[str, Path]) -> None:
    pages = {}
    for name in ("merged", "whole"):
        done = sepbench("report", flow["root"] / name, "--out", flow["root"] / f"report-{name}", timeout=600)
        assert done.returncode == 0, done.stderr
        html = (flow["root"] / f"report-{name}" / "index.html").read_text()
        counts = re.search(r"\((\d+) records from (\d+) files, (\d+) environments", done.stdout).groups()
        pages[name] = (re.findall(r"<h2[^>]*>(.*?)</h2>", html), counts)
    assert pages["merged"] == pages["whole"]
    assert pages["merged"][1] == ("16", "1", "1")


def test_a_deleted_shard_is_named_by_merge_and_on_the_page(flow: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(flow["root"] / "shards", tmp_path / "s")
    gone = next(p for p in (tmp_path / "s").glob("*.jsonl") if read_run(p).header.shard == "3/4")
    gone.unlink()
    code, stderr = _merge(flow, tmp_path / "s")
    assert code == 2 and "shard 3/4 missing (no results file; 4 of 16 cases)" in stderr
    assert "Traceback" not in stderr
    report = sepbench("report", tmp_path / "s", "--out", tmp_path / "r", timeout=600)  # the page names it too
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Incomplete sharded runs" in page and "shard 3/4 missing (no results file; 4 of 16 cases)" in page


def test_a_shard_copied_by_hand_is_named(flow: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(flow["root"] / "shards", tmp_path / "s")
    first = sorted((tmp_path / "s").glob("*.jsonl"))[0]
    shutil.copy(first, tmp_path / "s" / "copy.jsonl")
    code, stderr = _merge(flow, tmp_path / "s")
    assert code == 2 and "4 cases measured more than once" in stderr and "copy.jsonl" in stderr


def test_a_shard_cut_short_and_a_foreign_grid_are_named(flow: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(flow["root"] / "shards", tmp_path / "s")
    cut = next(p for p in (tmp_path / "s").glob("*.jsonl") if read_run(p).header.shard == "2/4")
    lines = cut.read_text().splitlines(keepends=True)
    assert '"kind":"end"' in lines[-1]  # a finished run's last line
    cut.write_text("".join(lines[:-2]))  # the job died before its last case, and so before its end line
    foreign = sepbench("run", "--grid", flow["grid"], "--out", tmp_path / "s")  # the grid without the axis
    assert foreign.returncode == 0, foreign.stderr
    code, stderr = _merge(flow, tmp_path / "s")
    assert code == 2 and "1 of 16 cases missing (1 of shard 2/4)" in stderr
    assert "a foreign grid" in stderr
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_an_empty_folder_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    done = sepbench("merge", tmp_path / "none")
    assert done.returncode == 2 and "no results files" in done.stderr and "Traceback" not in done.stderr

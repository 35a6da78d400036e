"""The README's and docs' figures are generated (`docs/figures.py`) from the committed results files; here,
the check that every page holds what its files give, the marker engine itself, and the few things a figure
generator cannot say: every results file a page names is committed, the printed excerpt is what `show`
prints, the crosscheck rows are their CSVs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import RESULTS, committed, sepbench

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import figures  # noqa: E402  (docs/figures.py, the generator)

README = "\n\n".join([(ROOT / "README.md").read_text(), *(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))])


def test_every_figure_on_the_pages_is_what_the_committed_files_give(capsys: pytest.CaptureFixture[str]) -> None:
    code = figures.main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_a_stale_figure_an_unknown_marker_and_a_figure_on_no_page_are_named() -> None:
    found = {"ratio": "1.23×", "table": "| a |\n|---|\n| 1 |"}
    page = ("x <!-- fig:ratio -->1.20×<!-- /fig:ratio --> y <!-- fig:gone -->0<!-- /fig:gone -->\n"
            "- item\n  <!-- fig:table -->\n\n  | a |\n  |---|\n  | 0 |\n\n  <!-- /fig:table -->\n")
    new, used, problems = figures.render(page, found)
    assert used == {"ratio", "table"}
    assert problems == ["figure ratio is stale", "marker fig:gone names no figure", "figure table is stale"]
    assert "<!-- fig:ratio -->1.23×<!-- /fig:ratio -->" in new
    assert "  <!-- fig:table -->\n\n  | a |\n  |---|\n  | 1 |\n\n  <!-- /fig:table -->" in new  # kept in its list item
    again, _, problems = figures.render(new, found)
    assert again == new and problems == ["marker fig:gone names no figure"]  # written once, stale no more


def test_every_results_file_the_readme_names_is_committed() -> None:
    examples = {"a.jsonl", "b.jsonl"}  # the report command's usage example
    names = set(re.findall(r"results/([\w.+/-]+\.(?:jsonl|csv))", README)) - examples
    assert names
    for name in names:
        assert (RESULTS / name).is_file(), f"README names results/{name}, which is not committed"


EXCERPT_RUN = "default-cpu-vm-torch2.13.0+cpu-20261123T204719Z.jsonl"


def test_the_printed_excerpt_is_what_show_prints_from_the_committed_run() -> None:
    (run,) = committed(EXCERPT_RUN)
    shown = sepbench("show", run, columns=240)
    assert shown.returncode == 0, shown.stderr
    printed = {line.rstrip() for line in shown.stdout.splitlines()}
    block = README.split("## What a run prints", 1)[1].split("```")[1]
    rows = [line.rstrip() for line in block.splitlines() if line.startswith("│")]
    assert len(rows) >= 9 and all(row in printed for row in rows)


def test_the_crosscheck_rows_are_the_committed_comparisons() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| `2026")]
    assert len(rows) >= 3
    for row in rows:
        row = re.sub(r"<!-- /?fig:[\w.]+ -->", "", row)
        folder = row.split("`")[1]
        (csv,) = committed(f"crosscheck/{folder}/crosscheck.csv")
        table = pd.read_csv(csv)
        cells = [c.strip() for c in row.strip("|").split("|")]
        for harness, within in (("asv", cells[2]), ("pytest-benchmark", cells[4])):
            ratio = table[f"{harness} / sepbench"]
            assert within == f"{int(((ratio - 1).abs() <= 0.10).sum())} of {len(table)}", (folder, harness)
        ratio = table["asv / sepbench"]
        assert cells[3] == f"{ratio.min():.2f}–{ratio.max():.2f}", folder


def test_the_resnet_prediction_holds_within_ten_percent() -> None:
    (path,) = committed(figures.RESNET)
    _, _, n = figures.model_file(path)
    assert n is not None and abs(n["as_is_s"] / n["measured"] / n["predicted_s"] - 1) <= 0.10

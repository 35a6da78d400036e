"""Reading asv and pytest-benchmark results for the crosscheck: passes numbered by the results' own
timestamps (a clone resets file times), skipped cases left out, Case fields as the join key, and the
agreement as the median of per-pass ratios."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sepbench.crosscheck import ASV_BENCHMARK, asv_passes, crosscheck, pytest_benchmark_passes
from sepbench.errors import SepbenchError

COLUMNS = ["result", "params", "version", "started_at", "duration"]
PARAMS = [["'cpu'", "'cuda'"], ["'inference'"], ["32"], ["'standard'", "'grouped'"]]
CASE = {"device": "cpu", "mode": "inference", "c_in": 32}


def _asv_file(path: Path, started_at: int, values: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"result_columns": COLUMNS,
                                "results": {f"bench_layers.{ASV_BENCHMARK.split('.', 1)[1]}":
                                            [values, PARAMS, "v", started_at, 1.0]}}))


def _save(path: Path, when: str, medians: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"datetime": when, "benchmarks": [
        *({"extra_info": {**CASE, "variant": v}, "stats": {"median": m}} for v, m in medians.items()),
        {"extra_info": {}, "stats": {"median": 1.0}},  # not a sepbench case: ignored
    ]}))


def test_asv_passes_are_numbered_by_started_at_not_file_time(tmp_path: Path) -> None:
    _asv_file(tmp_path / "pass-b.json", 2_000, [1e-4, 2e-4, None, float("nan")])
    _asv_file(tmp_path / "pass-a.json", 1_000, [9.0, 9.0, None, None])
    os.utime(tmp_path / "pass-a.json", (4e9, 4e9))  # the earlier pass has the newer file time
    (tmp_path / "machine.json").write_text("{}")
    df = asv_passes(tmp_path)
    assert sorted(df.itertuples(index=False)) == sorted([
        ("cpu", "inference", 32, "standard", 9.0, 1), ("cpu", "inference", 32, "grouped", 9.0, 1),
        ("cpu", "inference", 32, "standard", 1e-4, 2), ("cpu", "inference", 32, "grouped", 2e-4, 2),
    ])  # the CUDA cases were skipped (None, NaN) and are left out


def test_pytest_benchmark_passes_are_numbered_by_the_saves_datetime(tmp_path: Path) -> None:
    _save(tmp_path / "a.json", "2026-11-23T02:00:00+00:00", {"standard": 0.5})
    _save(tmp_path / "b.json", "2026-11-23T01:00:00+00:00", {"standard": 9.0})
    os.utime(tmp_path / "b.json", (4e9, 4e9))
    df = pytest_benchmark_passes(tmp_path)
    assert sorted(df.itertuples(index=False)) == [("cpu", "inference", 32, "standard", 0.5, 2),
                                                   ("cpu", "inference", 32, "standard", 9.0, 1)]


def test_agreement_is_the_median_of_ratios_paired_by_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine runs 2× slower in pass 2 for every harness: paired, the ratios stay 1.0, whereas the
    medians of unpaired passes would not; one odd pass does not move the median of three."""
    import pandas as pd

    import sepbench.crosscheck as cc

    speed = {1: 1.0, 2: 2.0, 3: 1.0}
    ours = pd.DataFrame([{**CASE, "variant": "standard", "sepbench": 1e-4 * speed[k], "pass": k} for k in speed])
    monkeypatch.setattr(cc, "sepbench_passes", lambda paths, left_out=None: ours)
    for k, when in zip(speed, (1_000, 2_000, 3_000), strict=True):
        odd = 1.5 if k == 3 else 1.0  # asv's third pass met an unlucky process
        _asv_file(tmp_path / "asv" / f"pass-{k}.json", when, [1e-4 * speed[k] * odd, None, None, None])
        _save(tmp_path / "pb" / f"{k}.json", f"2026-11-23T0{k}:00:00+00:00", {"standard": 1.1e-4 * speed[k]})
    table = crosscheck([tmp_path], tmp_path / "asv", tmp_path / "pb")
    row = table.iloc[0]
    assert row["passes"] == 3
    assert row["asv / sepbench"] == pytest.approx(1.0) and row["asv / sepbench high"] == pytest.approx(1.5)
    assert row["pytest-benchmark / sepbench"] == pytest.approx(1.1)
    _save(tmp_path / "pb" / "4.json", "2026-11-23T09:00:00+00:00", {"standard": 1e-4})
    with pytest.raises(SepbenchError, match="4 pytest-benchmark passes against 3 sepbench runs"):
        crosscheck([tmp_path], tmp_path / "asv", tmp_path / "pb")

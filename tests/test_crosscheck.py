"""Reading asv and pytest-benchmark results for the crosscheck: the latest run by the results' own
timestamps (a clone resets file times), skipped cases left out, Case fields as the join key."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sepbench.crosscheck import ASV_BENCHMARK, asv_medians, pytest_benchmark_medians

COLUMNS = ["result", "params", "version", "started_at", "duration"]
PARAMS = [["'cpu'", "'cuda'"], ["'inference'"], ["32"], ["'standard'", "'grouped'"]]


def _asv_file(path: Path, started_at: int, values: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"result_columns": COLUMNS,
                                "results": {f"bench_layers.{ASV_BENCHMARK.split('.', 1)[1]}":
                                            [values, PARAMS, "v", started_at, 1.0]}}))


def test_asv_reader_takes_the_latest_run_by_started_at_not_file_time(tmp_path: Path) -> None:
    _asv_file(tmp_path / "vm" / "new.json", 2_000, [1e-4, 2e-4, None, float("nan")])
    _asv_file(tmp_path / "vm" / "old.json", 1_000, [9.0, 9.0, 9.0, 9.0])
    os.utime(tmp_path / "vm" / "old.json", (4e9, 4e9))  # the older run has the newer file time
    (tmp_path / "vm" / "machine.json").write_text("{}")
    df = asv_medians(tmp_path)
    assert df.to_dict("records") == [
        {"device": "cpu", "mode": "inference", "c_in": 32, "variant": "standard", "asv": 1e-4},
        {"device": "cpu", "mode": "inference", "c_in": 32, "variant": "grouped", "asv": 2e-4},
    ]  # the CUDA cases were skipped (None, NaN) and are left out


def test_pytest_benchmark_reader_pools_every_save_by_the_median(tmp_path: Path) -> None:
    def save(name: str, median: float) -> None:
        (tmp_path / name).write_text(json.dumps({"datetime": "2026-11-23T02:00:00+00:00", "benchmarks": [
            {"extra_info": {"device": "cpu", "mode": "train", "c_in": 128, "variant": "standard"},
             "stats": {"median": median}},
            {"extra_info": {}, "stats": {"median": 1.0}},  # not a sepbench case: ignored
        ]}))

    for name, median in (("a.json", 0.5), ("b.json", 9.0), ("c.json", 0.7)):
        save(name, median)
    df = pytest_benchmark_medians(tmp_path)
    assert df.to_dict("records") == [
        {"device": "cpu", "mode": "train", "c_in": 128, "variant": "standard", "pytest_benchmark": 0.7}]

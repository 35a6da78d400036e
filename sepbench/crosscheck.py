"""Do the harnesses agree? The same cases timed by `sepbench run`, by asv (`TimeLayer.time_step`, read
from its results JSON) and by pytest-benchmark (read from its saved JSON), side by side.

Cases are joined on (device, mode, c_in, variant): asv's parameters and pytest-benchmark's
`extra_info` carry exactly these Case fields.

On a noisy machine one process's reading of a case moves by 20 % or more from the next process's,
so each harness is read as a median over several processes: every sepbench run given, every
pytest-benchmark save under the folder given, and asv's samples from all its rounds (appended with
`asv run --append-samples`). `nox -s crosscheck` alternates the three harnesses so that drift over
the comparison reaches all of them alike.
"""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path

import pandas as pd

from sepbench.errors import SepbenchError
from sepbench.store import load

KEY = ["device", "mode", "c_in", "variant"]
ASV_BENCHMARK = "bench_layers.TimeLayer.time_step"


def sepbench_medians(paths: list[Path]) -> pd.DataFrame:
    df, _ = load(paths)
    if df.empty:
        raise SepbenchError(f"no sepbench results in {', '.join(map(str, paths))}")
    ok = df[(df["status"] == "ok") & (df["batch"] == 1)]
    return ok.groupby(KEY, as_index=False)["timing_median_s"].median().rename(columns={"timing_median_s": "sepbench"})


def asv_medians(results_dir: Path, benchmark: str = ASV_BENCHMARK) -> pd.DataFrame:
    """Medians from the asv results file that ran `benchmark` last (any machine directory). "Last" is
    read from the results themselves (`started_at`), not from file times, which a clone resets."""
    latest: tuple[float, dict] | None = None
    for path in Path(results_dir).rglob("*.json"):
        if path.name in ("machine.json", "benchmarks.json"):
            continue
        data = json.loads(path.read_text())
        for name, columns in data.get("results", {}).items():
            if name.endswith(benchmark):
                named = dict(zip(data["result_columns"], columns, strict=False))
                started = named.get("started_at") or 0
                if latest is None or started > latest[0]:
                    latest = (started, named)
    if latest is None:
        raise SepbenchError(f"no asv results for {benchmark} under {results_dir}")
    values, params = latest[1]["result"], latest[1]["params"]
    rows = []
    for combo, value in zip(itertools.product(*params), values, strict=True):
        if value is None or (isinstance(value, float) and value != value):
            continue  # skipped (no GPU, invalid combination) or failed
        rows.append({**dict(zip(KEY, (ast.literal_eval(p) for p in combo), strict=True)), "asv": value})
    return pd.DataFrame(rows, columns=[*KEY, "asv"])


def latest_pytest_benchmark_save(storage: Path) -> tuple[dict, int]:
    """The latest pytest-benchmark save under `storage`, by the save's own `datetime` (file times
    reset on a clone), and how many saves there are."""
    saves = [json.loads(p.read_text()) for p in Path(storage).rglob("*.json")]
    if not saves:
        raise SepbenchError(f"no pytest-benchmark results under {storage}")
    return max(saves, key=lambda d: d.get("datetime", "")), len(saves)


def pytest_benchmark_medians(storage: Path) -> pd.DataFrame:
    """Per case, the median over every pytest-benchmark save under `storage` of that save's median
    (each save is one process). Point it at the saves of one comparison."""
    if not any(Path(storage).rglob("*.json")):
        raise SepbenchError(f"no pytest-benchmark results under {storage}")
    rows = [{**{k: b["extra_info"][k] for k in KEY}, "pytest_benchmark": b["stats"]["median"]}
            for p in Path(storage).rglob("*.json") for b in json.loads(p.read_text()).get("benchmarks", [])
            if all(k in b.get("extra_info", {}) for k in KEY)]
    table = pd.DataFrame(rows, columns=[*KEY, "pytest_benchmark"])
    return table.groupby(KEY, as_index=False)["pytest_benchmark"].median()


def crosscheck(sepbench_paths: list[Path], asv_dir: Path, pytest_benchmark_dir: Path) -> pd.DataFrame:
    """One row per case present in all three, with the harness / sepbench ratios."""
    table = sepbench_medians(sepbench_paths).merge(asv_medians(asv_dir), on=KEY).merge(
        pytest_benchmark_medians(pytest_benchmark_dir), on=KEY)
    if table.empty:
        raise SepbenchError("the three harnesses have no case in common; time the same grid with each")
    table["asv / sepbench"] = table["asv"] / table["sepbench"]
    table["pytest-benchmark / sepbench"] = table["pytest_benchmark"] / table["sepbench"]
    return table.sort_values(KEY).reset_index(drop=True)

"""Do the harnesses agree? The same cases timed by `sepbench run`, by asv (`TimeLayer.time_step`, read
from its results JSON) and by pytest-benchmark (read from its saved JSON), side by side.

Cases are joined on (device, mode, c_in, variant): asv's parameters and pytest-benchmark's
`extra_info` carry exactly these Case fields.

Paired by pass, like everything sepbench compares. This machine drifts by 1.5–2× over minutes, and
one process's reading of a case can sit 20–80 % from the next process's, so medians of harnesses run
at different times disagree by chance. `nox -s crosscheck` therefore runs the harnesses in passes,
back to back (a sepbench run, an asv round, a pytest-benchmark save, then again), and keeps each
pass's files: sepbench runs (`*.jsonl`), asv results (`asv/*.json`, one per pass) and pytest-benchmark
saves (`pytest-benchmark/**.json`). Pass k of each harness is the k-th by its own start time. Each
harness is held against sepbench within a pass, and the agreement is the median of those per-pass
ratios: drift between passes cancels, and one pass's unlucky process does not decide.
"""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path

import pandas as pd

from sepbench.errors import SepbenchError, os_reason
from sepbench.store import load

KEY = ["device", "mode", "c_in", "variant"]
ASV_BENCHMARK = "bench_layers.TimeLayer.time_step"
HARNESSES = ("asv", "pytest_benchmark")


def sepbench_passes(paths: list[Path], left_out: list | None = None) -> pd.DataFrame:
    """Per run (pass) and case, `sepbench run`'s median; passes numbered by the runs' start times. What
    the reader left out (damaged lines) goes to `left_out`."""
    df, problems = load(paths)
    if left_out is not None:
        left_out += problems
    if df.empty:
        raise SepbenchError(f"no sepbench results in {', '.join(map(str, paths))}")
    ok = df[(df["status"] == "ok") & (df["batch"] == 1)]
    table = ok[["run_started", "run_id", *KEY, "timing_median_s"]].rename(columns={"timing_median_s": "sepbench"})
    return _number(table, "run_started", "run_id").drop(columns=["run_started", "run_id"])


def _number(table: pd.DataFrame, *order: str) -> pd.DataFrame:
    """Add `pass`: 1 for the earliest start, 2 for the next, …"""
    starts = table[list(order)].drop_duplicates().sort_values(list(order))
    starts["pass"] = range(1, len(starts) + 1)
    return table.merge(starts, on=list(order))


MAX_HARNESS_BYTES = 256 << 20


def harness_json(path: Path, harness: str) -> dict:
    """One asv or pytest-benchmark results file, read through one guard: a file that cannot be read, is
    not JSON, or is not a JSON object ends in one line naming it, never a traceback."""
    try:
        if path.stat().st_size > MAX_HARNESS_BYTES:
            raise SepbenchError(f"{path}: {path.stat().st_size:,} bytes, too large for a {harness} results file")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise SepbenchError(f"cannot read {harness} results file {path}: {os_reason(exc)}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SepbenchError(f"{path} is not a readable {harness} results file (not JSON: {exc})") from None
    if not isinstance(data, dict):
        raise SepbenchError(f"{path} is not a {harness} results file (its JSON is not an object)")
    return data


def _shape_error(path: Path, harness: str, exc: Exception) -> SepbenchError:
    return SepbenchError(f"{path} is not a {harness} results file this sepbench reads "
                         f"({type(exc).__name__}: {exc})")


def _asv_file(path: Path, benchmark: str) -> tuple[float, list[dict]] | None:
    data = harness_json(path, "asv")
    try:
        return _asv_rows(data, benchmark)
    except (KeyError, TypeError, ValueError, AttributeError, SyntaxError) as exc:
        raise _shape_error(path, "asv", exc) from None


def _asv_rows(data: dict, benchmark: str) -> tuple[float, list[dict]] | None:
    for name, columns in data.get("results", {}).items():
        if not name.endswith(benchmark):
            continue
        named = dict(zip(data["result_columns"], columns, strict=False))
        rows = []
        for combo, value in zip(itertools.product(*named["params"]), named["result"], strict=True):
            if value is None or (isinstance(value, float) and value != value):
                continue  # skipped (no GPU, invalid combination) or failed
            rows.append({**dict(zip(KEY, (ast.literal_eval(p) for p in combo), strict=True)), "asv": value})
        return float(named.get("started_at") or 0), rows
    return None


def asv_passes(results_dir: Path, benchmark: str = ASV_BENCHMARK) -> pd.DataFrame:
    """Per asv results file under `results_dir` (one per pass) and case, asv's median; passes numbered by
    the results' own `started_at`, never by file times (a clone resets those)."""
    rows = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        if path.name in ("machine.json", "benchmarks.json"):
            continue
        found = _asv_file(path, benchmark)
        if found:
            rows += [{**row, "started": found[0]} for row in found[1]]
    if not rows:
        raise SepbenchError(f"no asv results for {benchmark} under {results_dir}")
    return _number(pd.DataFrame(rows), "started").drop(columns=["started"])


def latest_pytest_benchmark_save(storage: Path) -> tuple[dict, int]:
    """The latest pytest-benchmark save under `storage`, by the save's own `datetime` (file times
    reset on a clone), and how many saves there are."""
    saves = [harness_json(p, "pytest-benchmark") for p in sorted(Path(storage).rglob("*.json"))]
    if not saves:
        raise SepbenchError(f"no pytest-benchmark results under {storage}")
    return max(saves, key=lambda d: d.get("datetime", "")), len(saves)


def pytest_benchmark_passes(storage: Path) -> pd.DataFrame:
    """Per pytest-benchmark save under `storage` (one per pass) and case, its median; passes numbered
    by the saves' own `datetime`."""
    rows = []
    for path in sorted(Path(storage).rglob("*.json")):
        data = harness_json(path, "pytest-benchmark")
        try:
            rows += [{**{k: b["extra_info"][k] for k in KEY}, "pytest_benchmark": float(b["stats"]["median"]),
                      "started": str(data.get("datetime", ""))}
                     for b in data.get("benchmarks", []) if all(k in b.get("extra_info", {}) for k in KEY)]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _shape_error(path, "pytest-benchmark", exc) from None
    if not rows:
        raise SepbenchError(f"no pytest-benchmark results under {storage}")
    return _number(pd.DataFrame(rows), "started").drop(columns=["started"])


def crosscheck(sepbench_paths: list[Path], asv_dir: Path, pytest_benchmark_dir: Path,
               left_out: list | None = None) -> pd.DataFrame:
    """One row per case present in all three: each harness's median over its passes, and per harness
    the median over passes of its per-pass ratio to sepbench (with the lowest and highest)."""
    passes = sepbench_passes(sepbench_paths, left_out)
    for harness, table in (("asv", asv_passes(asv_dir)),
                           ("pytest_benchmark", pytest_benchmark_passes(pytest_benchmark_dir))):
        counts = (passes["pass"].max(), table["pass"].max())
        if counts[0] != counts[1]:
            raise SepbenchError(f"{counts[1]} {harness.replace('_', '-')} passes against {counts[0]} sepbench runs: "
                                "a crosscheck pairs them pass by pass, so give each harness the same number")
        passes = passes.merge(table, on=[*KEY, "pass"])
    if passes.empty:
        raise SepbenchError("the three harnesses have no case in common; time the same grid with each")
    for harness in HARNESSES:
        passes[f"{harness}_ratio"] = passes[harness] / passes["sepbench"]
    agg: dict[str, tuple[str, str]] = {"passes": ("pass", "nunique"), "sepbench": ("sepbench", "median")}
    for harness in HARNESSES:
        agg[harness] = (harness, "median")
        agg[f"{harness} / sepbench"] = (f"{harness}_ratio", "median")
        agg[f"{harness} / sepbench low"] = (f"{harness}_ratio", "min")
        agg[f"{harness} / sepbench high"] = (f"{harness}_ratio", "max")
    table = passes.groupby(KEY, as_index=False).agg(**agg)
    return table.rename(columns=lambda c: c.replace("pytest_benchmark /", "pytest-benchmark /"))\
        .sort_values(KEY).reset_index(drop=True)

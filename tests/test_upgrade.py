"""One reader for every results file, and one upgrade step per format change: the committed files of
every schema version load through it, and what readers once filled in for old records by hand is
filled in by the step, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import RESULTS, committed
from sepbench import upgrade
from sepbench.store import ABFile, RunFile, read, read_run

# Version 1, from before the allocator policy, the ceiling and the spread were recorded.
V1_RUN = "default-cpu-vm-torch2.13.0+cpu-20261123T050308Z.jsonl"
V1_CUDA = "default-cuda-h100-torch2.11.0+cu130-20261123T025103Z.jsonl"
V1_AB = "ab/aa-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-20261123T202228Z.jsonl"


def _raw_version(path: Path) -> int:
    with open(path, "rb") as f:
        return json.loads(f.readline())["schema_version"]


def _committed_files() -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*.jsonl") if "local" not in p.relative_to(RESULTS).parts)


def test_every_committed_results_file_loads_through_one_reader() -> None:
    files = _committed_files()
    assert len(files) >= 40
    for path in files:
        found = read(path)
        assert found.problems == [], f"{path}: {found.problems[:1]}"
        assert found.header is not None and found.header.schema_version == upgrade.SCHEMA_VERSION
        assert isinstance(found, ABFile) == path.read_bytes().startswith(b'{"kind":"ab"')


def test_one_committed_file_of_every_schema_version_is_kept() -> None:
    versions = {_raw_version(p) for p in _committed_files()}
    assert versions == set(range(1, upgrade.SCHEMA_VERSION + 1))
    assert upgrade.STEPS.keys() == set(range(1, upgrade.SCHEMA_VERSION))  # a step out of every older version


def test_version_1_gets_what_readers_once_filled_in() -> None:
    (path,) = committed(V1_RUN)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert "heap" not in raw[0]["environment"] and all("ceiling" not in r["theory"] for r in raw[1:])
    run = read_run(path)
    assert run.header is not None and run.header.environment["heap"] == upgrade.HEAP_DEFAULTS
    assert {r.theory.ceiling for r in run.records} == {"float32"}
    variants = [r for r in run.records if r.realized is not None]
    assert variants and all(r.realized is not None and r.realized.spread is not None for r in variants)
    from sepbench.speedup import spread

    base = {r.group_id: r.timing.times_s for r in run.records if r.case_id == r.group_id and r.timing}
    for r in variants:
        assert r.timing is not None and r.realized is not None
        assert r.realized.spread == pytest.approx(spread(base[r.group_id], r.timing.times_s))
        assert r.realized.unstable == (r.realized.spread > 0.10)


def test_version_1_cuda_float32_with_tf32_is_bounded_by_the_tf32_ceiling() -> None:
    run = read_run(committed(V1_CUDA)[0])
    tf32 = [r for r in run.records if r.case.dtype == "float32" and r.case.tf32]
    assert tf32 and {r.theory.ceiling for r in tf32} == {"tf32"}


def test_a_version_1_comparison_loads_as_the_current_version() -> None:
    ab = read(committed(V1_AB)[0])
    assert isinstance(ab, ABFile) and ab.problems == [] and ab.header is not None
    assert ab.header.schema_version == upgrade.SCHEMA_VERSION and len(ab.records) == 216


def test_a_file_from_a_newer_sepbench_is_refused_line_by_line(tmp_path: Path) -> None:
    (path,) = committed(V1_RUN)
    lines = path.read_text().splitlines()
    newer = tmp_path / "newer.jsonl"
    newer.write_text("\n".join([json.dumps({**json.loads(lines[0]), "schema_version": 3}), *lines[1:3]]) + "\n")
    run = read(newer)
    assert isinstance(run, RunFile) and run.header is None and run.records == []
    assert f"schema version 3, this sepbench reads 1 to {upgrade.SCHEMA_VERSION}" in run.problems[0].message


def test_a_current_line_is_not_touched() -> None:
    data = {"kind": "case", "theory": {}}
    assert upgrade.line(data, upgrade.SCHEMA_VERSION, None) is data

"""Shards back into runs: does a folder of results files hold every case of its grid exactly once?

`sepbench run --shard K/N` measures one slice of a grid, anywhere: a GitHub Actions matrix job, a Slurm
array task, a Kubernetes pod. Whoever gathers the files needs to know, before trusting a report, that
nothing is missing and nothing counted twice. The check groups the run files by what must be complete
together (grid digest, PyTorch build, device), expands the grid from the files' own headers, and holds
the case ids against it. A missing case is named with the shard it belongs to, so a failed job can be
found and re-run. A complete group can be written out as one run file, which every other command then
reads as if the grid had been measured in one go.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from sepbench.errors import SepbenchError
from sepbench.grid import Grid, GridFile, format_validation, parse_shard
from sepbench.records import CaseRecord, RunHeader
from sepbench.store import Problem, ResultsFile, RunFile, read_runs


@dataclass
class Coverage:
    """One (grid, torch, device) of the files: which shards are there, and which cases are not once."""

    grid_name: str
    grid_digest: str
    torch: str
    device: str
    runs: list[RunFile]
    expected: int = 0
    shards_of: int | None = None  # N of K/N; None for unsharded runs
    missing_shards: list[str] = field(default_factory=list)
    missing: dict[str, str | None] = field(default_factory=dict)  # case id → the shard it belongs to
    duplicated: dict[str, list[Path]] = field(default_factory=dict)  # case id → the files holding it
    errors: list[str] = field(default_factory=list)  # what makes the group unmergeable beyond the counts

    @property
    def complete(self) -> bool:
        return not (self.missing or self.duplicated or self.missing_shards or self.errors)

    @property
    def measured(self) -> int:
        return len({r.case_id for run in self.runs for r in run.records})

    def problems(self) -> list[str]:
        """One line per thing wrong, the worst first; long lists are cut to their first few ids."""
        where = f"{self.grid_name} · torch {self.torch} · {self.device}"
        lines = [f"{where}: {e}" for e in self.errors]
        absent = set(self.missing_shards)
        if absent:
            n = len(self.missing_shards)
            names = ", ".join(self.missing_shards[:5]) + (f", … ({n} of {self.shards_of})" if n > 5 else "")
            cases = sum(s in absent for s in self.missing.values())
            lines.append(f"{where}: shard {names} missing (no results file; {cases} of {self.expected} cases)")
        cut = {cid: s for cid, s in self.missing.items() if s not in absent}
        if cut:
            by_shard = Counter(s or "unsharded" for s in cut.values())
            shards = ", ".join(f"{n} of shard {s}" for s, n in sorted(by_shard.items())[:5])
            lines.append(f"{where}: {len(cut)} of {self.expected} cases missing ({shards}); first: "
                         + "; ".join(list(cut)[:3]))
        if self.duplicated:
            first = next(iter(self.duplicated.items()))
            lines.append(f"{where}: {len(self.duplicated)} cases measured more than once; first: {first[0]} in "
                         + ", ".join(p.name for p in first[1]))
        return lines


def _key(header: RunHeader) -> tuple[str, str, str]:
    return header.grid_digest, str(header.environment.get("torch")), str(header.environment.get("device"))


def coverage(paths: list[Path], expected_grid: Grid | None = None,
          sharded_only: bool = False) -> tuple[list[Coverage], list[Problem]]:
    """Group the run files under `paths` and check each group's cases against its grid. With
    `expected_grid`, a file of any other grid is a problem (a foreign digest), not a group of its own;
    with `sharded_only`, groups without a shard are left out (a folder of whole runs repeats cases)."""
    runs, problems = read_runs(paths)
    groups: dict[tuple[str, str, str], Coverage] = {}
    for run in runs:
        path = run.path
        problems += [p for p in run.problems if not p.torn_tail]
        if run.header is None:
            continue
        if expected_grid is not None and run.header.grid_digest != expected_grid.digest():
            problems.append(Problem(path, 1, f"grid {run.header.grid_name!r} digest {run.header.grid_digest}, not "
                                             f"the {expected_grid.digest()} of {expected_grid.name!r}: a foreign grid"))
            continue
        h = run.header
        groups.setdefault(_key(h), Coverage(h.grid_name, h.grid_digest, *_key(h)[1:], runs=[])).runs.append(run)
    if sharded_only:
        groups = {k: c for k, c in groups.items() if any(r.header and r.header.shard for r in c.runs)}
    for cov in groups.values():
        _cover(cov)
    return list(groups.values()), problems


def _cover(cov: Coverage) -> None:
    header = cov.runs[0].header
    assert header is not None
    try:
        grid = Grid(header.grid_name, GridFile.model_validate(header.grid))
    except ValidationError as exc:
        cov.errors.append(format_validation(f"{cov.runs[0].path.name}: its header's grid", exc))
        return
    shards = {run.header.shard for run in cov.runs if run.header}
    sizes = {parse_shard(s)[1] for s in shards if s}
    if len(sizes) > 1 or (sizes and None in shards):
        cov.errors.append("runs cut into different numbers of shards ("
                          + ", ".join(sorted(s or "unsharded" for s in shards)) + ")")
    cov.shards_of = max(sizes) if sizes else None
    owner: dict[str, str | None] = {}
    if cov.shards_of is None:
        owner = {c.id: None for c in grid.expand()[0]}
    else:
        n = cov.shards_of
        for k in range(1, n + 1):
            owner.update({c.id: f"{k}/{n}" for c in grid.expand((k, n))[0]})
        # A shard whose slice holds no case is not missing: it has nothing to give (its run, if any,
        # wrote a file with a header and no case).
        owned = set(owner.values())
        cov.missing_shards = [f"{k}/{n}" for k in range(1, n + 1) if f"{k}/{n}" not in shards and f"{k}/{n}" in owned]
    cov.expected = len(owner)
    where: dict[str, list[Path]] = {}
    for run in cov.runs:
        for record in run.records:
            where.setdefault(record.case_id, []).append(run.path)
    cov.missing = {cid: shard for cid, shard in owner.items() if cid not in where}
    cov.duplicated = {cid: paths for cid, paths in where.items() if len(paths) > 1}
    foreign = [cid for cid in where if cid not in owner]
    if foreign:
        cov.errors.append(f"{len(foreign)} cases that the grid does not hold; first: {foreign[0]}")
    for run in cov.runs:
        shard = run.header.shard if run.header else None
        elsewhere = sum(1 for r in run.records if shard and owner.get(r.case_id, shard) != shard)
        if elsewhere:
            cov.errors.append(f"{run.path.name}: {elsewhere} of its {len(run.records)} cases belong to other "
                              f"shards than its {shard} (cut by another sepbench's sharding?)")


def merge(cov: Coverage, out_dir: Path) -> Path:
    """A complete group as one run file: the first shard's header (its environment, plus where every
    shard ran), every record once, all under one new run id."""
    if not cov.complete:
        raise SepbenchError("; ".join(cov.problems()))
    runs = sorted(cov.runs, key=lambda r: r.header.started if r.header else "")
    first = runs[0].header
    assert first is not None
    run_id = uuid.uuid4().hex[:12]
    environment = {**first.environment, "merged_shards": [
        {"shard": r.header.shard, "run_id": r.header.run_id, "machine": r.header.environment.get("machine"),
         "started": r.header.started, "file": r.path.name} for r in runs if r.header]}
    header = first.model_copy(update={"run_id": run_id, "shard": None, "environment": environment})
    results = ResultsFile.create(out_dir, header)
    try:
        for run in runs:
            for record in run.records:
                results.append(CaseRecord.model_validate({**record.model_dump(), "run_id": run_id}))
    except SepbenchError:
        results.path.unlink(missing_ok=True)  # a merged run is whole or absent: never a partial file
        raise
    finally:
        results.unlock()
    return results.path
